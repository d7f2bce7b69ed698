"""``ss.quantize``: one verb over every quantization technique, and the handler of each built-in one.

The verb builds a :class:`~slimstack._config.Request` and runs
``REGISTRY.dispatch(config, model).run(model, config, request)``. Each handler below is one
technique: it says which models it applies to and which backends it offers, and translates its
config into a :class:`Scheme` the backends read. Module handlers share the pipeline in
``_pipeline.py``; causal LMs go to ``backends/llamacpp``. The input model is never modified.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from .._arch import is_causal_lm
from .._config import Handler, Request
from .._utils import any_grad_mode, keeps_global_rng
from ..datasets import Dataset
from ..errors import ConfigError, DataError
from ._configs import QAT, DynamicInt8, QuantConfig, StaticInt8, WeightOnly
from ._job import module_refusal, prepare
from ._pipeline import evaluator, run_pipeline
from ._qat import convert_qat, prepare_qat, train_qat
from ._record import QuantRecord, QuantResult
from ._registry import REGISTRY
from ._scheme import Scheme
from .backends.torch._convert import candidate_layers

__all__ = ["quantize", "ModuleHandler"]


@keeps_global_rng
@any_grad_mode
def quantize(model: nn.Module, config: QuantConfig, *, calibration: Any = None, val: Dataset | None = None,
             train: Dataset | None = None, tolerance: float | None = None, example_inputs: Any = None,
             threads: int = 2, seed: int = 0, data: Any = None) -> QuantResult:
    """Quantize ``model`` per ``config``; returns a :class:`QuantResult` and leaves ``model`` untouched.

    Parameters
    ----------
    model : nn.Module
        A classifier/regressor module, a sentence encoder (``ss.zoo.SentenceEncoder``) or a causal LM.
    config : DynamicInt8, StaticInt8, WeightOnly or QAT (or any registered quantization config)
    calibration : Dataset, array or list of str
        Unlabelled inputs for static activation ranges (StaticInt8, GPTQ) and for timing ``backend="auto"``.
    val : Dataset
        Labelled data the result may only be scored on: it picks the backend and drives the
        accuracy-aware fallback (held-out text for a causal LM).
    train : Dataset
        Labelled data QAT trains on.
    tolerance : float in (0, 1)
        Largest loss of quality relative to the float model (default 0.01 when ``val`` is given):
        layers are kept in float, fewest first, until the quantized model is within it.
    example_inputs : tensor or array
        A batch used to export to ONNX when neither ``calibration`` nor ``val`` is given.
    data : Dataset
        The old name, kept working: it is ``val`` and, when ``train`` is not given, also ``train``.

    Examples
    --------
    >>> q = ss.quantize(cnn, ss.StaticInt8(observer="percentile"), calibration=train_ds)   # doctest: +SKIP
    >>> q = ss.quantize(mlp, ss.DynamicInt8(), val=val_ds, tolerance=0.01)               # doctest: +SKIP
    >>> q.record.kept_float, q.records[0].action                                          # doctest: +SKIP
    """
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"ss.quantize takes a quantization config ({', '.join(c.__name__ for c in REGISTRY)}), "
                          f"got {type(config).__name__}")
    if data is not None and val is not None:
        raise ConfigError("pass val= (scoring data) or data= (its old name), not both")
    request = Request(train=data if train is None else train, val=data if val is None else val,
                      calibration=calibration, tolerance=tolerance, example_inputs=example_inputs, threads=threads,
                      seed=seed)
    return REGISTRY.dispatch(config, model).run(model, config, request)


class ModuleHandler(Handler):
    """A technique for torch modules and sentence encoders run through the shared module pipeline.

    Subclasses set ``config`` and ``backends`` and implement :meth:`scheme`; :meth:`check` may
    refuse a prepared job (e.g. StaticInt8 without calibration).
    """

    backends: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime")

    def applies_to(self, model: Any) -> str | None:
        return module_refusal(model)

    def scheme(self, config: Any) -> Scheme:
        raise NotImplementedError(f"{type(self).__name__}.scheme")

    def check(self, job: Any) -> None:
        """Raise on a prepared job this technique cannot run."""

    def run(self, model: Any, config: Any, request: Request) -> QuantResult:
        job = prepare(model, config, request, self.scheme(config))
        self.check(job)
        result = run_pipeline(job, self.backends)
        if job.train is not None and job.train is not job.val:  # said, not dropped silently
            result.record.notes.append(f"train= is not used: {type(config).__name__} trains nothing "
                                       "(val= scores, calibration= sets ranges)")
        return result


@REGISTRY.register(DynamicInt8)
class DynamicInt8Handler(ModuleHandler):
    """int8 weights; activations quantized at run time (torch or ONNX Runtime)."""

    def scheme(self, c: DynamicInt8) -> Scheme:
        return Scheme(technique="DynamicInt8", activations="dynamic", per_channel=c.per_channel,
                      reduce_range=c.reduce_range, embedding_bits=c.embedding_bits, fuse_layers=c.fuse_layers,
                      optimize_graph=c.optimize_graph, try_unfused=c.optimize_graph, skip=c.skip)


@REGISTRY.register(StaticInt8)
class StaticInt8Handler(ModuleHandler):
    """int8 weights and activations, activation ranges from calibration data."""

    def scheme(self, c: StaticInt8) -> Scheme:
        return Scheme(technique="StaticInt8", activations="static", per_channel=c.granularity == "per_channel",
                      observer=c.observer, percentile=c.percentile, smoothquant_alpha=c.smoothquant_alpha,
                      calibration_size=c.calibration_size, embedding_bits=c.embedding_bits,
                      fuse_layers=c.fuse_layers, optimize_graph=True, skip=c.skip)

    def check(self, job: Any) -> None:
        if job.calibration is None:
            raise DataError("StaticInt8 needs calibration= (a few hundred representative inputs, e.g. training "
                            "rows) to fix the activation ranges")


@REGISTRY.register(WeightOnly)
class WeightOnlyLMHandler(Handler):
    """WeightOnly on a causal LM: calibrated rounding onto llama.cpp's grids (backends/llamacpp)."""

    backends = ("llamacpp", "torch")

    def applies_to(self, model: Any) -> str | None:
        from .backends.llamacpp import LlamaCppLM

        if isinstance(model, LlamaCppLM):
            return "a LlamaCppLM is already quantized; quantize the float CausalLM it was made from"
        return None if is_causal_lm(model) else "the llama.cpp path takes causal LMs"

    def run(self, model: Any, config: WeightOnly, request: Request) -> QuantResult:
        from .backends.llamacpp._lm_quantize import quantize_lm

        return quantize_lm(model, config, calibration=request.calibration, data=request.val,
                           tolerance=request.tolerance, threads=request.threads, seed=request.seed)


LM_ONLY = ("format", "bits_per_weight", "window", "fallback", "smooth", "distill_steps", "formats",
           "untie_head")


@REGISTRY.register(WeightOnly)
class WeightOnlyHandler(ModuleHandler):
    """WeightOnly on torch modules: int8/int4 group-quantized Linear and Embedding weights."""

    backends = ("torch",)

    def scheme(self, c: WeightOnly) -> Scheme:
        return Scheme(technique="WeightOnly", activations="float", weight_bits=c.bits, group_size=c.group_size or 128,
                      calibration_size=c.calibration_size, skip=c.skip)

    def run(self, model: Any, config: WeightOnly, request: Request) -> QuantResult:
        lm_only = [f"{f}={getattr(config, f)!r}" for f in LM_ONLY
                   if getattr(config, f) != WeightOnly.__dataclass_fields__[f].default]
        if lm_only:  # refused, not ignored: these options mean nothing on the module path
            raise ConfigError(f"WeightOnly({', '.join(lm_only)}) applies to causal LMs (llama.cpp's grids) only; "
                              f"this model is a {type(model).__name__}, quantized per group of Linear weights. "
                              "Drop those options (bits, group_size, calibration_size and skip apply here)")
        return super().run(model, config, request)


@REGISTRY.register(QAT)
class QATHandler(ModuleHandler):
    """Quantization-aware training on ``train``, then conversion to the int8 modules StaticInt8 produces."""

    backends = ("torch",)

    def scheme(self, c: QAT) -> Scheme:
        return Scheme(technique="QAT", activations="static", skip=c.skip)

    def run(self, model: Any, config: QAT, request: Request) -> QuantResult:
        job = prepare(model, config, request, self.scheme(config), default_tolerance=None)
        if job.train is None:
            raise DataError("QAT trains the model: pass train= (a labelled training Dataset; data= also works)")
        layers, unsupported = candidate_layers(job.model, job.scheme)
        for n in [n for n in layers if not isinstance(job.model.get_submodule(n), nn.Linear | nn.Conv2d)]:
            layers.remove(n)
            unsupported.append({"name": n, "type": type(job.model.get_submodule(n)).__name__, "status": "float",
                                "reason": "QAT trains Linear and Conv2d layers; quantize embeddings with WeightOnly"})
        qat = prepare_qat(job.model, layers)
        history = train_qat(qat, job.train, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                            seed=config.seed)
        out, records = convert_qat(qat)
        notes = [f"QAT training loss per epoch: {history}"]
        record = QuantRecord(config=config.to_dict(), backend="torch", backend_reason="QAT trains in PyTorch",
                             layers=records + unsupported, notes=notes, tolerance=job.tolerance)
        if job.val is not None and job.val is not job.train:  # scored on held-out data only, never on train
            evaluate, record.quality_metric, _ = evaluator(job)
            record.quality_float, record.quality_quantized = evaluate(model), evaluate(out)
        if job.tolerance is not None:
            notes.append(f"tolerance={job.tolerance} is not a QAT setting: QAT keeps no layer in float; "
                         "compare record.quality_float and quality_quantized")
        return QuantResult(out, record)
