"""The runtimes the module pipeline builds for: one small class per backend, registered by name.

A backend's ``refuses(job)`` says why it cannot take a job (None when it can); ``candidates(job)``
builds what it will be timed and scored as (ONNX Runtime offers an encoder's fused and unfused
graphs as two). A candidate has ``name``, ``units()`` (what the fallback may keep float) and
``build(float_units) -> (model, layer dicts)``. Handlers list the backends they offer; the
pipeline asks :func:`candidates_for`, never the config's type.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from .._arch import is_encoder
from ..errors import ConfigError, DataError, ModelError
from ._data import batches
from ._job import Job
from ._registry import BACKENDS, register_backend
from ._scheme import Scheme
from .backends.torch._convert import build_torch, candidate_layers

__all__ = ["TorchBackend", "OrtBackend", "candidates_for"]

FLOAT_REASON = "kept in float by the accuracy-aware fallback"


@register_backend
class TorchBackend:
    """slimstack's own int8/int4 modules swapped into a copy of the model."""

    name: ClassVar[str] = "torch"

    @staticmethod
    def refuses(job: Job) -> str | None:
        return None

    @classmethod
    def candidates(cls, job: Job) -> list[Any]:
        return [cls(job)]

    def __init__(self, job: Job):
        self.job = job
        self.layers, self.unsupported = candidate_layers(job.model, job.scheme)

    def units(self) -> list[str]:
        return list(self.layers)

    def build(self, float_units: frozenset[str] = frozenset()) -> tuple[Any, list[dict[str, Any]]]:
        job = self.job
        keep = [n for n in self.layers if n not in float_units]
        model, recs = build_torch(copy.deepcopy(job.model), job.scheme, keep, job.calibration, job.seed)
        recs += [{"name": n, "type": type(job.model.get_submodule(n)).__name__, "status": "float",
                  "reason": FLOAT_REASON} for n in self.layers if n in float_units]
        return model, recs + self.unsupported


@register_backend
class OrtBackend:
    """Export to ONNX, quantize with onnxruntime.quantization, run in an InferenceSession."""

    name: ClassVar[str] = "onnxruntime"

    @staticmethod
    def refuses(job: Job) -> str | None:
        s = job.scheme
        if s.embedding_bits != 8:
            return (f"{s.technique}(embedding_bits={s.embedding_bits!r}) packs embedding rows as int4, which ONNX "
                    "Runtime's quantizer cannot; use backend='torch' or 'auto', or embedding_bits=8")
        return None

    @classmethod
    def candidates(cls, job: Job) -> list[Any]:
        # An encoder's graph runs fused (ONNX Runtime's Attention kernel) or unfused (every matmul int8,
        # attention scores included); which is faster depends on the CPU, so auto times both.
        if job.config.backend == "auto" and job.scheme.try_unfused and is_encoder(job.model):
            return [cls(job, True), cls(job, False)]
        return [cls(job)]

    def __init__(self, job: Job, fused: bool | None = None):
        from .backends.onnxruntime._quantize import OrtBuilder

        scheme: Scheme = job.scheme
        if fused is not None:
            scheme = scheme.replace(optimize_graph=fused)
            self.name = "onnxruntime" if fused else "onnxruntime-unfused"
        sample = job.sample_inputs()
        if sample is None:
            raise DataError("the onnxruntime backend exports the model and needs example inputs; pass "
                            "calibration=, val= or example_inputs= (a batch shaped like the model's input)")
        _, example = next(batches(job.model, sample, 8))
        self.builder = OrtBuilder(job.model, scheme, example, job.calibration)
        skip = scheme.skip
        self.skipped = [u for u in self.builder.units() if any(s in u or "/" + s.replace(".", "/") + "/" in u
                                                                for s in skip)]

    def units(self) -> list[str]:
        return [u for u in self.builder.units() if u not in self.skipped]

    def build(self, float_units: frozenset[str] = frozenset()) -> tuple[Any, list[dict[str, Any]]]:
        model, recs = self.builder.build(frozenset(float_units) | set(self.skipped))
        for r in recs:
            if r["name"] in self.skipped:
                r["reason"] = "listed in config.skip"
            elif r["name"] in float_units:
                r["reason"] = FLOAT_REASON
        return model, recs


def candidates_for(job: Job, offered: tuple[str, ...]) -> tuple[list[Any], list[str]]:
    """The built candidates for ``job`` among the ``offered`` backends, and notes on those left out.

    A backend the config names explicitly must work (its refusal or build error is raised); with
    ``backend="auto"`` a refusal or failure becomes a note and the others are kept.
    """
    cfg, name = job.config, type(job.config).__name__
    if cfg.backend != "auto" and cfg.backend not in offered:
        raise ConfigError(f"{name}(backend={cfg.backend!r}) is not offered for a {type(job.model).__name__}; "
                          f"it runs here on {', '.join(map(repr, offered))} or 'auto'")
    wanted = offered if cfg.backend == "auto" else (cfg.backend,)
    notes: list[str] = []
    if cfg.backend == "auto" and len(offered) == 1:
        notes.append(f"{name} runs on the {offered[0]} backend only")
    out: list[Any] = []
    for b in wanted:
        backend = BACKENDS[b]
        why = backend.refuses(job)
        if why and cfg.backend != "auto":
            raise ConfigError(why)
        if why:
            notes.append(f"{name} runs on the {', '.join(o for o in wanted if o != b)} backend only here: {why}")
            continue
        try:
            out += backend.candidates(job)
        except (ModelError, ConfigError, DataError) as exc:
            if cfg.backend != "auto" or b == wanted[0]:
                raise
            notes.append(f"{b} backend not built: {exc}")
    return out, notes
