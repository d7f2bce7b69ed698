"""The quantization configs: one frozen dataclass per technique, validated where it is written.

``ss.quantize(model, config)`` looks the handler up by the config's type, so a recipe is plain data:
``{"type": "StaticInt8", "version": 1, "data": {"observer": "percentile"}}``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .._config import Config, register_config
from .._validate import check_choice
from ..errors import ConfigError

__all__ = ["QuantConfig", "DynamicInt8", "StaticInt8", "WeightOnly", "QAT", "BACKENDS", "OBSERVERS"]

BACKENDS = ("auto", "torch", "onnxruntime", "llamacpp")  # every runtime name; each handler declares its own
OBSERVERS = ("minmax", "percentile", "mse", "entropy")
GRANULARITIES = ("per_channel", "per_tensor")
GROUP_SIZES = (32, 64, 96, 128, 192, 256)
LM_FORMATS = ("auto", "Q4_0", "IQ4_NL", "Q4_1", "Q5_0", "Q5_1", "Q8_0")


@dataclasses.dataclass(frozen=True)
class QuantConfig(Config):
    """Fields every quantization config shares.

    ``backend`` is "torch" (slimstack's own int8 modules), "onnxruntime" (export to ONNX, quantize
    with onnxruntime.quantization, run in an InferenceSession) or "auto" (build both, time them on
    the caller's data and keep the faster one; the record lists every candidate's timing).
    ``skip`` names layers (module names, or substrings of them) to keep in float on purpose.
    """

    kind: ClassVar[str] = "quantize"
    backend: str = "auto"
    skip: tuple[str, ...] = ()

    def validate(self) -> None:
        from ._registry import offered_backends

        name = type(self).__name__
        check_choice(f"{name}.backend", self.backend, BACKENDS)
        offered = offered_backends(type(self))  # what this config's handlers declare
        if offered and self.backend not in ("auto", *offered):
            raise ConfigError(f"{name}.backend={self.backend!r} is not offered; {name} runs on "
                              f"{', '.join(map(repr, offered))} or 'auto'.{_who_offers(self.backend)}")
        if isinstance(self.skip, str) or not all(isinstance(s, str) for s in self.skip):
            raise ConfigError(f"{type(self).__name__}.skip={self.skip!r} must be a tuple of layer names, "
                              "e.g. skip=('classifier',)")


def _who_offers(backend: str) -> str:
    from ._registry import REGISTRY, offered_backends

    who = [c.__name__ for c in REGISTRY.configs() if backend in offered_backends(c)]
    return f" backend={backend!r} is offered by {', '.join(who)}." if who else ""


def _embedding_bits(cfg: QuantConfig) -> None:
    if cfg.embedding_bits not in (4, 8, "mixed") or isinstance(cfg.embedding_bits, bool):
        raise ConfigError(f"{type(cfg).__name__}.embedding_bits={cfg.embedding_bits!r} must be 8 (int8 rows), 4 "
                          "(packed int4 in groups of 32: about half the size of an embedding table) or 'mixed' "
                          "(rows the calibration data looks up stay int8, the rest int4); 4 and 'mixed' run on "
                          "the torch backend")


@register_config
@dataclasses.dataclass(frozen=True)
class DynamicInt8(QuantConfig):
    """int8 weights (per output channel), activations quantized at run time from their own range.

    Needs no calibration data, so it is the first thing to try on Linear-heavy models (transformers,
    MLPs). ``reduce_range`` quantizes weights to 7 bits, which avoids int16 overflow in the u8s8
    kernels of CPUs without VNNI at a small accuracy cost. ``optimize_graph`` fuses an encoder's
    ONNX graph (Attention, SkipLayerNorm, Gelu) before quantizing; with ``backend="auto"`` both the
    fused and the unfused graph are built and timed, and the faster is kept. ``fuse_layers`` runs
    each BERT-style layer on the torch backend as one fused int8 block (QKV as one GEMM; bias, GELU
    and residual inside oneDNN's int8 GEMM; a short-sequence attention kernel). Embedding tables
    have no matmul to run in int8; they are stored as int8 rows, as packed int4 in groups of 32
    with ``embedding_bits=4``, or with ``embedding_bits="mixed"`` as int8 for the rows the
    calibration inputs look up and int4 for the rest (torch backend).

    Examples
    --------
    >>> q = ss.quantize(encoder, ss.DynamicInt8(backend="auto"))   # doctest: +SKIP
    """

    per_channel: bool = True
    reduce_range: bool = False
    optimize_graph: bool = True
    fuse_layers: bool = True
    embedding_bits: int | str = 8

    def validate(self) -> None:
        super().validate()
        for f in ("per_channel", "reduce_range", "optimize_graph", "fuse_layers"):
            if not isinstance(getattr(self, f), bool):
                raise ConfigError(f"DynamicInt8.{f}={getattr(self, f)!r} must be True or False")
        _embedding_bits(self)


@register_config
@dataclasses.dataclass(frozen=True)
class StaticInt8(QuantConfig):
    """int8 weights and activations, activation ranges fixed beforehand from calibration data.

    ``observer`` chooses how a range is read from the calibration activations: "minmax" (the
    extremes), "percentile" (clip the ``percentile`` tail, robust to outliers), "mse" (the clip that
    minimises quantization error) or "entropy" (the clip that minimises KL divergence of the
    histogram, as TensorRT does). ``smoothquant_alpha`` migrates activation outliers into the
    weights of Linear layers (SmoothQuant); 0 turns it off. ``fuse_layers`` runs each BERT-style
    layer on the torch backend as one fused int8 block (the GELU output passes to the next GEMM as
    uint8 without a float round trip). ``embedding_bits=4`` stores embedding tables as packed int4
    in groups of 32; ``embedding_bits="mixed"`` keeps the rows the calibration inputs look up in
    int8 and packs the rest as int4 (torch backend; raise ``calibration_size`` to cover more of
    the vocabulary).

    Examples
    --------
    >>> q = ss.quantize(cnn, ss.StaticInt8(observer="percentile"), calibration=train_ds)   # doctest: +SKIP
    """

    observer: str = "minmax"
    percentile: float = 99.99
    granularity: str = "per_channel"
    smoothquant_alpha: float = 0.0
    calibration_size: int = 256
    fuse_layers: bool = True
    embedding_bits: int | str = 8

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.fuse_layers, bool):
            raise ConfigError(f"StaticInt8.fuse_layers={self.fuse_layers!r} must be True or False")
        _embedding_bits(self)
        check_choice("StaticInt8.observer", self.observer, OBSERVERS)
        check_choice("StaticInt8.granularity", self.granularity, GRANULARITIES)
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"StaticInt8.percentile={self.percentile!r} must be in (50, 100], e.g. 99.99")
        if not 0.0 <= self.smoothquant_alpha < 1.0:
            raise ConfigError(f"StaticInt8.smoothquant_alpha={self.smoothquant_alpha!r} must be in [0, 1); "
                              "0.5 is the SmoothQuant default, 0 turns it off")
        if not isinstance(self.calibration_size, int) or self.calibration_size < 1:
            raise ConfigError(f"StaticInt8.calibration_size={self.calibration_size!r} must be a positive integer")


@register_config
@dataclasses.dataclass(frozen=True)
class WeightOnly(QuantConfig):
    """Weights stored as int8 or int4 codes with one scale per ``group_size`` inputs; activations stay float.

    ``group_size=None`` (the default) is 32 on a causal LM (llama.cpp's block size; it divides every
    layer of the Llama, Qwen2, Mistral and GPT-2 families) and 128 on other models.

    The file shrinks about 4x (int8) or 7-8x (int4) against fp32. On encoders and other torch
    models inference dequantizes the weights (or runs torch's weight-packed CPU kernels), so the
    gain is size and memory, not always speed.

    On a causal LM (``ss.zoo.smollm2()``, ``ss.load`` of an LM folder) the rounding is calibrated
    (``method="gptq"``: error feedback from each Linear's calibration Hessian; "rtn" rounds to
    nearest) onto llama.cpp's block grids (``format``: "Q4_0", "IQ4_NL", "Q4_1", "Q5_0", "Q5_1", "Q8_0";
    "auto" is Q4_0 for 4 bits and Q8_0 for 8). ``backend="llamacpp"`` writes a GGUF file with those
    codes and runs it in llama.cpp (blocks of 32 inputs, so ``group_size=32``); "torch" keeps the
    transformers model with int4/int8 group-quantized Linears (any ``group_size`` dividing every
    layer's input); "auto" measures both and keeps the faster. ``bits_per_weight`` > 0 turns on
    mixed precision: each decoder layer's measured KLD when it alone is quantized ranks the layers,
    and the most sensitive tensors move to wider types until the average bits per weight (tied
    embedding included) reaches the budget. ``fallback`` is the metric the accuracy-aware fallback
    (``tolerance=`` with ``data=`` texts) checks: "kld" (mean KL divergence to the float model, in
    nats; tolerance is the largest allowed) or "perplexity" (tolerance is the relative increase).
    ``format="IQ4_NL"`` is llama.cpp's non-uniform 4-bit grid (16 levels, denser near zero, one scale
    per 32 inputs, 4.5 bits per weight like Q4_0; llama.cpp backend only). ``smooth`` > 0 (Llama family)
    first rescales channels in a function-preserving way (SmoothQuant, migration strength ``smooth``) so
    llama.cpp's 8-bit activation blocks see smaller outliers; measured worth it with 8-bit weights, not
    with GPTQ at 4 bits (docs/llm-quantize.md). ``distill_steps`` > 0 (causal LMs) then keeps every code
    and trains the block scales and RMSNorm weights by logit distillation from the float model on the
    calibration windows (EfficientQAT-style); same file size and kernels, kept only where held-out
    calibration windows' KL drops. ``formats`` (causal LMs) fixes the formats every tensor, the (tied)
    head included, may take, narrowest first: ``("IQ4_NL", "Q8_0")`` or ``("Q4_0", "Q8_0")`` keep to
    llama.cpp's fast CPU kernels (measured on AVX-512: IQ4_NL everywhere decodes as fast as Q4_0 and
    is more accurate; Q5_0 and the K-quants decode slower per byte), and ``bits_per_weight`` then
    chooses among them; without a budget every tensor takes the first.
    ``untie_head=True`` (a tied-embedding LM on llama.cpp) writes the head as its own tensor, GPTQ-rounded
    for the head's inputs and counted in the budget, and the input embedding apart at Q8_0: a lookup
    reads one row per token, so the file grows (by the embedding) but decoding does not slow down.

    Examples
    --------
    >>> q = ss.quantize(encoder, ss.WeightOnly(bits=4, group_size=128))   # doctest: +SKIP
    >>> q = ss.quantize(lm, ss.WeightOnly(bits=4, group_size=32, bits_per_weight=5.4),
    ...                 calibration=texts).model                            # doctest: +SKIP
    """

    bits: int = 8
    group_size: int | None = None
    backend: str = "auto"
    method: str = "gptq"
    format: str = "auto"
    bits_per_weight: float = 0.0
    calibration_size: int = 256
    window: int = 128
    fallback: str = "kld"
    smooth: float = 0.0
    distill_steps: int = 0
    formats: tuple[str, ...] = ()
    untie_head: bool = False

    def validate(self) -> None:
        super().validate()
        check_choice("WeightOnly.bits", self.bits, (4, 8))
        if isinstance(self.distill_steps, bool) or not isinstance(self.distill_steps, int) or self.distill_steps < 0:
            raise ConfigError(f"WeightOnly.distill_steps={self.distill_steps!r} must be a whole number >= 0 (0 = off; "
                              "about 100-300 steps of 4 calibration windows fit the block scales of a causal LM)")
        if isinstance(self.smooth, bool) or not isinstance(self.smooth, int | float) or not 0 <= self.smooth < 1:
            raise ConfigError(f"WeightOnly.smooth={self.smooth!r} must be a number in [0, 1): SmoothQuant's migration "
                              "strength for llama.cpp's 8-bit activation blocks (0 = off; 0.5 is the usual choice)")
        if self.group_size is not None and self.group_size not in GROUP_SIZES:
            raise ConfigError(f"WeightOnly.group_size={self.group_size!r} is not allowed; choose one of "
                              f"{', '.join(map(str, GROUP_SIZES))} (it must divide every quantized layer's input size), or None for the "
                              "default (32 on a causal LM, llama.cpp's block; 128 on other models)")
        check_choice("WeightOnly.method", self.method, ("gptq", "rtn"))
        check_choice("WeightOnly.format", self.format, LM_FORMATS)
        if self.format != "auto" and (self.format == "Q8_0") != (self.bits == 8):
            raise ConfigError(f"WeightOnly(bits={self.bits}, format={self.format!r}) disagree: Q8_0 is the 8-bit "
                              "format, Q4_0/IQ4_NL/Q4_1/Q5_0/Q5_1 the 4-bit ones (Q5 as the wider step of a 4-bit mix)")
        if not isinstance(self.bits_per_weight, int | float) or not (self.bits_per_weight == 0
                                                                      or 4.5 <= self.bits_per_weight <= 8.5):
            raise ConfigError(f"WeightOnly.bits_per_weight={self.bits_per_weight!r} must be 0 (no mixed precision) "
                              "or a budget in [4.5, 8.5] bits per weight, e.g. 5.5")
        for f in ("calibration_size", "window"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"WeightOnly.{f}={v!r} must be a positive integer")
        check_choice("WeightOnly.fallback", self.fallback, ("kld", "perplexity"))
        if not isinstance(self.untie_head, bool):
            raise ConfigError(f"WeightOnly.untie_head={self.untie_head!r} must be True or False")
        if self.untie_head and self.smooth:
            raise ConfigError("WeightOnly(untie_head=True) with smooth > 0 is not supported; use one of them")
        if self.formats:
            if isinstance(self.formats, str) or not isinstance(self.formats, tuple | list):
                raise ConfigError(f"WeightOnly.formats={self.formats!r} must be a tuple of block formats, narrowest "
                                  "first, e.g. ('Q4_0', 'Q8_0')")
            from .backends.llamacpp._grids import GRIDS

            for f in self.formats:
                check_choice("WeightOnly.formats entry", f, tuple(GRIDS))
            bpw = [GRIDS[f].bpw for f in self.formats]
            if bpw != sorted(set(bpw)):
                raise ConfigError(f"WeightOnly.formats={tuple(self.formats)!r} must go from narrowest to widest "
                                  f"(bits per weight {bpw}), each wider than the one before")
            if self.format != "auto" and self.formats[0] != self.format:
                raise ConfigError(f"WeightOnly(format={self.format!r}, formats={tuple(self.formats)!r}) disagree: the "
                                  "first of formats is the base format; drop format= or start formats with it")
            if (self.bits == 8) != (self.formats[0] == "Q8_0"):
                raise ConfigError(f"WeightOnly(bits={self.bits}, formats={tuple(self.formats)!r}) disagree: bits=8 "
                                  "means formats=('Q8_0',); a 4-bit base starts with Q4_0, IQ4_NL, Q4_1 or Q5_0")


@register_config
@dataclasses.dataclass(frozen=True)
class QAT(QuantConfig):
    """Quantization-aware training: fine-tune with fake int8 quantization, then convert to int8.

    The forward pass rounds weights (per channel) and activations (running min-max ranges) as the
    int8 model will; the straight-through estimator passes gradients through the rounding. The
    result is the same deployable model :class:`StaticInt8` produces.

    Examples
    --------
    >>> q = ss.quantize(cnn, ss.QAT(epochs=3), data=train_ds)   # doctest: +SKIP
    """

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0
    backend: str = "torch"

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"QAT.epochs={self.epochs!r} must be a positive integer")
        if not self.lr > 0:
            raise ConfigError(f"QAT.lr={self.lr!r} must be > 0, e.g. 1e-3")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"QAT.batch_size={self.batch_size!r} must be a positive integer")
