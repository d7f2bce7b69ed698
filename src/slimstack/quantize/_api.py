"""``ss.quantize``: one verb over every quantization technique and backend.

The handler for a config builds each backend it may use, times the candidates on the caller's
inputs when ``backend="auto"``, and with ``tolerance=``/``data=`` runs the accuracy-aware fallback
on the chosen backend. The input model is deep-copied before anything touches it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from .._config import Registry
from .._utils import any_grad_mode, keeps_global_rng
from ..datasets import Dataset
from ..errors import ConfigError, DataError, ModelError
from ._configs import QAT, DynamicInt8, QuantConfig, StaticInt8, WeightOnly
from ._data import as_inputs, batches, check_runs, is_encoder
from ._fallback import accuracy_aware
from ._qat import convert_qat, prepare_qat, train_qat
from ._record import QuantRecord, QuantResult
from .backends.torch._convert import build_torch, candidate_layers

__all__ = ["quantize"]

_HANDLERS = Registry("quantize")
_LOWER_IS_BETTER = ("mse", "rmse", "mae", "log_loss")


@keeps_global_rng
@any_grad_mode
def quantize(model: nn.Module, config: QuantConfig, *, calibration: Any = None, data: Dataset | None = None,
             tolerance: float | None = None, example_inputs: Any = None, threads: int = 2,
             seed: int = 0) -> QuantResult:
    """Quantize ``model`` per ``config``; returns ``QuantResult(model, record)`` and leaves ``model`` untouched.

    Parameters
    ----------
    model : nn.Module
        A classifier/regressor module, or a sentence encoder (``ss.zoo.SentenceEncoder``).
    config : DynamicInt8, StaticInt8, WeightOnly or QAT
    calibration : Dataset, array or list of str
        Inputs for static activation ranges (StaticInt8) and for timing ``backend="auto"``.
    data : Dataset
        Labelled data: scores the backends, drives the accuracy-aware fallback, and trains QAT.
    tolerance : float in (0, 1)
        Largest relative quality loss allowed (default 0.01 when ``data`` is given): layers are kept
        in float, fewest first, until the quantized model is within it.
    example_inputs : tensor or array
        A batch used to export to ONNX when neither ``calibration`` nor ``data`` is given.

    Examples
    --------
    >>> q = ss.quantize(cnn, ss.StaticInt8(observer="percentile"), calibration=train_ds)   # doctest: +SKIP
    >>> q.record.kept_float                                                               # doctest: +SKIP
    """
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"ss.quantize takes a quantization config (DynamicInt8, StaticInt8, WeightOnly, QAT), "
                          f"got {type(config).__name__}")
    handler = _HANDLERS.lookup(config)
    from .backends.llamacpp._lm_quantize import is_causal_lm, quantize_lm

    if is_causal_lm(model):  # a CausalLM: calibrated rounding onto llama.cpp's grids (backends/llamacpp)
        if not isinstance(config, WeightOnly):
            raise ConfigError(f"a causal LM is quantized with WeightOnly(bits=4 or 8, ...), got "
                              f"{type(config).__name__}; activations stay float, weights go to llama.cpp's formats")
        return quantize_lm(model, config, calibration=calibration, data=data, tolerance=tolerance, threads=threads,
                           seed=seed)
    if not isinstance(model, nn.Module):
        raise ModelError(f"ss.quantize takes a torch nn.Module or sentence encoder, got {type(model).__name__}; "
                         "export scikit-learn models with ss.save and quantize the torch ones")
    if tolerance is not None and not (isinstance(tolerance, float | int) and 0 < tolerance < 1):
        raise ConfigError(f"tolerance={tolerance!r} must be a relative quality loss in (0, 1), e.g. 0.01 for 1%")
    if tolerance is not None and data is None:
        raise DataError(f"tolerance={tolerance} needs data= (a labelled Dataset) to measure quality against")
    if data is not None and tolerance is None and not isinstance(config, QAT):
        tolerance = 0.01
    if data is not None and not isinstance(data, Dataset):
        raise DataError(f"data must be a labelled slimstack Dataset, got {type(data).__name__}; "
                        "wrap arrays with ss.datasets.from_arrays(X, y)")
    work = copy.deepcopy(model).eval()  # before anything runs it: a forward in train mode moves BatchNorm
    calib = None
    if calibration is not None:
        limit = getattr(config, "calibration_size", 512)
        calib = as_inputs(calibration, work, what="calibration", limit=limit)
        check_runs(work, calib, "calibration")
    if data is not None:
        check_runs(work, as_inputs(data, work, what="data", limit=4), "data")
    ctx = _Context(model=work, config=config, calibration=calib, data=data, tolerance=tolerance,
                   example=example_inputs, threads=threads, seed=seed)
    return handler(ctx)


class _Context:
    def __init__(self, **kw: Any):
        self.__dict__.update(kw)

    def sample_inputs(self) -> np.ndarray | list[str] | None:
        """Up to one batch of inputs for timing and export: calibration, else data, else example_inputs."""
        if self.calibration is not None:
            return self.calibration[:128]
        if self.data is not None:
            return as_inputs(self.data, self.model, what="data", limit=128)
        if self.example is not None:
            return as_inputs(self.example, self.model, what="example_inputs", limit=128)
        if is_encoder(self.model):
            return ["slimstack measures every model on this CPU.", "A quantized encoder keeps .encode."]
        return None


def _evaluator(ctx: _Context) -> tuple[Callable[[Any], float], str, bool]:
    from ..measure import adapt
    from ..measure._measure import _inputs, _outputs, _quality
    from ..measure._metrics import PRIMARY_METRIC

    data = ctx.data
    metric = PRIMARY_METRIC.get(data.task, "accuracy")

    def evaluate(model: Any) -> float:
        a = adapt(model)
        out = _outputs(a, _inputs(data, {"m": a}), 128, ctx.threads)
        value = _quality(a, out, data).get(metric)
        if value is None:
            raise DataError(f"data {data.name!r} (task {data.task!r}) gives no {metric!r} to compare against; "
                            "pass labelled classification, regression or sts data")
        return float(value)

    return evaluate, metric, metric not in _LOWER_IS_BETTER


def _time_candidates(models: dict[str, Any], inputs: Any, threads: int) -> dict[str, float]:
    from ..measure import adapt
    from ..measure._measure import _time_interleaved

    adapters = {n: adapt(m) for n, m in models.items()}
    prepared = {n: a.prepare(inputs) for n, a in adapters.items()}
    samples = _time_interleaved(adapters, prepared, threads, warmup=2, runs=7, progress=False)
    return {n: float(np.median(s)) for n, s in samples.items()}


class _TorchBackend:
    name = "torch"

    def __init__(self, ctx: _Context):
        self.ctx = ctx
        self.layers, self.unsupported = candidate_layers(ctx.model, ctx.config)

    def units(self) -> list[str]:
        return list(self.layers)

    def build(self, float_units: frozenset[str] = frozenset()) -> tuple[nn.Module, list[dict[str, Any]]]:
        keep = [n for n in self.layers if n not in float_units]
        model, recs = build_torch(copy.deepcopy(self.ctx.model), self.ctx.config, keep, self.ctx.calibration,
                                  self.ctx.seed)
        recs += [{"name": n, "type": type(self.ctx.model.get_submodule(n)).__name__, "status": "float",
                  "reason": "kept in float by the accuracy-aware fallback"} for n in self.layers if n in float_units]
        return model, recs + self.unsupported


class _OrtBackend:
    name = "onnxruntime"

    def __init__(self, ctx: _Context, fused: bool | None = None):
        from .backends.onnxruntime._quantize import OrtBuilder

        if fused is not None and hasattr(ctx.config, "optimize_graph"):
            ctx = _Context(**{**ctx.__dict__, "config": ctx.config.replace(optimize_graph=fused)})
            self.name = "onnxruntime" if fused else "onnxruntime-unfused"

        sample = ctx.sample_inputs()
        if sample is None:
            raise DataError("the onnxruntime backend exports the model and needs example inputs; pass "
                            "calibration=, data= or example_inputs= (a batch shaped like the model's input)")
        _, example = next(batches(ctx.model, sample, 8))
        self.builder = OrtBuilder(ctx.model, ctx.config, example, ctx.calibration)
        skip = ctx.config.skip
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
                r["reason"] = "kept in float by the accuracy-aware fallback"
        return model, recs


def _backends(ctx: _Context) -> tuple[list[Any], list[str]]:
    cfg = ctx.config
    notes: list[str] = []
    int4_tables = getattr(cfg, "embedding_bits", 8) != 8
    if cfg.backend == "torch" or isinstance(cfg, WeightOnly | QAT) or (int4_tables and cfg.backend == "auto"):
        if cfg.backend == "auto":
            notes.append(f"{type(cfg).__name__}{f' with embedding_bits={cfg.embedding_bits!r}' if int4_tables else ''}"
                         " runs on the torch backend only")
        return [_TorchBackend(ctx)], notes
    if int4_tables:
        raise ConfigError(f"{type(cfg).__name__}(embedding_bits={cfg.embedding_bits!r}) packs embedding rows as int4, "
                          "which ONNX Runtime's quantizer cannot; use backend='torch' or 'auto', or embedding_bits=8")
    if cfg.backend == "onnxruntime":
        return [_OrtBackend(ctx)], notes
    out: list[Any] = [_TorchBackend(ctx)]
    # An encoder's graph runs fused (ONNX Runtime's Attention kernel) or unfused (every matmul int8,
    # attention scores included); which is faster depends on the CPU, so auto times both.
    forms = [True, False] if is_encoder(ctx.model) and getattr(cfg, "optimize_graph", False) else [None]
    for fused in forms:
        try:
            out.append(_OrtBackend(ctx, fused))
        except (ModelError, ConfigError, DataError) as exc:
            notes.append(f"onnxruntime backend not built: {exc}")
    return out, notes


def _run(ctx: _Context) -> QuantResult:
    backends, notes = _backends(ctx)
    built = {b.name: b.build() for b in backends}
    evaluate = metric = None
    higher = True
    candidates: dict[str, dict[str, Any]] = {b.name: {} for b in backends}
    base = None
    if ctx.data is not None:
        evaluate, metric, higher = _evaluator(ctx)
        base = evaluate(ctx.model)
        for name, (m, _) in built.items():
            candidates[name]["quality"] = evaluate(m)
    sample = ctx.sample_inputs()
    if len(backends) > 1 and sample is not None:
        times = _time_candidates({"float": ctx.model, **{n: m for n, (m, _) in built.items()}}, sample, ctx.threads)
        for n in built:
            candidates[n]["latency_ms"] = times[n]
        candidates["float"] = {"latency_ms": times["float"], **({"quality": base} if base is not None else {})}
    chosen, reason = _choose(ctx, backends, candidates, base, higher)
    backend = next(b for b in backends if b.name == chosen)
    model, layers = built[chosen]
    record = QuantRecord(config=ctx.config.to_dict(), backend=chosen, backend_reason=reason, layers=layers,
                         candidates=candidates, notes=notes, tolerance=ctx.tolerance, quality_metric=metric,
                         quality_float=base)
    if evaluate is not None:
        found = accuracy_aware(backend.units(), backend.build, evaluate, base, ctx.tolerance, higher)
        model, record.layers = found["build"]
        record.quality_quantized, record.fallback_met = found["quality"], found["met"]
        record.sensitivity = found["costs"]
        for r in record.layers:
            if r["name"] in found["costs"]:
                r["cost"] = found["costs"][r["name"]]
        if not found["met"]:
            record.notes.append(f"no variant stayed within tolerance={ctx.tolerance}; every layer is kept in float")
    return QuantResult(model, record)


def _choose(ctx: _Context, backends: list[Any], cand: dict[str, dict[str, Any]], base: float | None,
            higher: bool) -> tuple[str, str]:
    names = [b.name for b in backends]
    if len(names) == 1:
        why = "requested" if ctx.config.backend != "auto" else "the only backend for this config"
        return names[0], why
    if not all("latency_ms" in cand[n] for n in names):
        return names[0], "no inputs to time the backends on; pass calibration= or data= to choose by measurement"
    ok = names
    if base is not None:
        from ._fallback import relative_loss

        ok = [n for n in names if relative_loss(base, cand[n]["quality"], higher) <= ctx.tolerance] or names
    best = min(ok, key=lambda n: cand[n]["latency_ms"])
    lat = ", ".join(f"{n} {cand[n]['latency_ms']:.2f} ms" for n in names)
    return best, f"fastest measured{' within tolerance' if base is not None else ''} ({lat})"


@_HANDLERS.register(DynamicInt8)
def _dynamic(ctx: _Context) -> QuantResult:
    return _run(ctx)


@_HANDLERS.register(StaticInt8)
def _static(ctx: _Context) -> QuantResult:
    if ctx.calibration is None:
        raise DataError("StaticInt8 needs calibration= (a few hundred representative inputs, e.g. training rows) "
                        "to fix the activation ranges")
    return _run(ctx)


@_HANDLERS.register(WeightOnly)
def _weight_only(ctx: _Context) -> QuantResult:
    return _run(ctx)


@_HANDLERS.register(QAT)
def _qat(ctx: _Context) -> QuantResult:
    cfg = ctx.config
    if ctx.data is None:
        raise DataError("QAT trains the model: pass data= (a labelled training Dataset)")
    layers, unsupported = candidate_layers(ctx.model, cfg)
    for n in [n for n in layers if not isinstance(ctx.model.get_submodule(n), nn.Linear | nn.Conv2d)]:
        layers.remove(n)
        unsupported.append({"name": n, "type": type(ctx.model.get_submodule(n)).__name__, "status": "float",
                            "reason": "QAT trains Linear and Conv2d layers; quantize embeddings with WeightOnly"})
    model = prepare_qat(ctx.model, layers)
    history = train_qat(model, ctx.data, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed)
    model, records = convert_qat(model)
    record = QuantRecord(config=cfg.to_dict(), backend="torch", backend_reason="QAT trains in PyTorch",
                         layers=records + unsupported, notes=[f"QAT training loss per epoch: {history}"])
    return QuantResult(model, record)
