"""Pruning configs for causal language models: Wanda sparsity, whole-layer drop and width pruning.

Each takes calibration text (``ss.prune(lm, cfg, calibration=texts)``: a list of strings, a task-"lm"
dataset or token-id windows) for one forward pass that measures what to cut, and can recover with a
short LM-loss/distillation run on that same text (``recovery_steps``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from .._config import Config, register_config
from ..errors import ConfigError

__all__ = ["LayerDrop", "WandaPruning", "WidthPruning", "LMRecovery"]

LM_RECOVERY = ("none", "lm", "distill")
RECOVERY_PARAMS = ("all", "blocks", "near_cut", "norms")


def _fraction(field: str, value: Any, example: str) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= float(value) < 1.0
    if not ok:
        raise ConfigError(f"{field}={value!r} must be a number in [0, 1) (the fraction removed; 1 would remove "
                          f"everything), e.g. {example}")


def _count(field: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{field}={value!r} must be an integer >= {minimum}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LMRecovery(Config):
    """Calibration and recovery settings shared by the LM pruning configs.

    ``calibration_windows`` windows of ``calibration_tokens`` tokens are cut from the calibration
    text for the importance pass. ``recovery="distill"`` then trains the pruned model for
    ``recovery_steps`` steps of ``recovery_batch`` windows of ``recovery_tokens`` tokens (default:
    ``calibration_tokens``) to match the unpruned model's next-token distribution (forward KL on
    its top-``recovery_top_k`` tokens plus a tail, through ``ss.distill``), on ``ss.prune(...,
    train=texts)`` when given (unlabelled text; keep it apart from the text you evaluate on), else
    on the calibration windows. ``recovery_params`` says what trains: "all", "blocks" (decoder
    layers and final norm; the tied embedding / LM head stays the unpruned model's), "near_cut"
    (LayerDrop: only the kept layers next to a dropped one) or "norms". ``recovery_cache_dir``
    keeps the teacher's top-k on disk; ``recovery_checkpoint_dir`` makes the run resumable.
    ``"lm"`` trains on the plain next-token loss of the calibration windows instead. Pruned zeros
    stay zero during recovery.
    """

    kind: ClassVar[str] = "prune"

    calibration_windows: int = 32
    calibration_tokens: int = 256
    recovery: str = "none"
    recovery_steps: int = 100
    recovery_lr: float = 5e-5
    recovery_params: str = "all"
    recovery_batch: int = 4
    recovery_tokens: int | None = None
    recovery_top_k: int = 64
    recovery_cache_dir: str | None = None
    recovery_checkpoint_dir: str | None = None
    seed: int = 0

    def validate(self) -> None:
        _count("calibration_windows", self.calibration_windows)
        _count("calibration_tokens", self.calibration_tokens, 2)
        if self.recovery not in LM_RECOVERY:
            raise ConfigError(f"recovery={self.recovery!r} is not allowed; choose one of: "
                              f"{', '.join(map(repr, LM_RECOVERY))}")
        _count("recovery_steps", self.recovery_steps)
        if not (isinstance(self.recovery_lr, int | float) and not isinstance(self.recovery_lr, bool)
                and self.recovery_lr > 0):
            raise ConfigError(f"recovery_lr={self.recovery_lr!r} must be a positive number, e.g. 5e-5")
        if self.recovery_params not in RECOVERY_PARAMS:
            raise ConfigError(f"recovery_params={self.recovery_params!r} is not allowed; choose one of: "
                              f"{', '.join(map(repr, RECOVERY_PARAMS))}")
        _count("recovery_batch", self.recovery_batch)
        _count("recovery_top_k", self.recovery_top_k)
        if self.recovery_tokens is not None:
            _count("recovery_tokens", self.recovery_tokens, 2)
        for f in ("recovery_cache_dir", "recovery_checkpoint_dir"):
            if getattr(self, f) is not None and not isinstance(getattr(self, f), str):
                raise ConfigError(f"{f}={getattr(self, f)!r} must be a folder path (a string) or None")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed={self.seed!r} must be an integer")


@register_config
@dataclasses.dataclass(frozen=True)
class WandaPruning(LMRecovery):
    """Unstructured or N:M sparsity by Wanda importance ``|W_ij| * ||X_j||_2`` (Sun et al. 2023).

    One calibration pass records the L2 norm of every input feature of every Linear in the decoder
    layers; each output row then drops its ``sparsity`` lowest-scored weights (``nm=None``) or keeps
    the ``n`` best of every ``m`` consecutive inputs (``nm=(2, 4)``). Embeddings and the LM head
    (often tied to them) are left dense and recorded as skipped. ``importance="magnitude"`` scores by
    ``|W|`` alone (the baseline Wanda beats). ``ss.save`` stores values plus a bitmask, so the file shrinks.

    Examples
    --------
    >>> calib = ss.datasets.load("pytorch_readme", split="train")            # doctest: +SKIP
    >>> r = ss.prune(lm, ss.WandaPruning(sparsity=0.5), calibration=calib)   # doctest: +SKIP
    >>> r = ss.prune(lm, ss.WandaPruning(nm=(2, 4)), calibration=calib)      # doctest: +SKIP
    """

    sparsity: float = 0.5
    nm: tuple[int, int] | None = None
    importance: str = "wanda"

    def validate(self) -> None:
        super().validate()
        if self.importance not in ("wanda", "magnitude"):
            raise ConfigError(f"importance={self.importance!r} is not allowed; choose 'wanda' or 'magnitude'")
        if self.nm is None:
            _fraction("sparsity", self.sparsity, "WandaPruning(sparsity=0.5)")
            return
        nm = tuple(self.nm) if isinstance(self.nm, list | tuple) else None
        if nm is None or len(nm) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in nm) \
                or not 0 < nm[0] < nm[1]:
            raise ConfigError(f"nm={self.nm!r} must be (n, m) with 0 < n < m (keep n of every m inputs), "
                              "e.g. nm=(2, 4)")
        object.__setattr__(self, "nm", nm)


@register_config
@dataclasses.dataclass(frozen=True)
class LayerDrop(LMRecovery):
    """Remove ``layers`` whole decoder layers, those whose removal the calibration text says costs least.

    ``importance="cosine"`` (ShortGPT, Men et al. 2024) scores block ``i`` by ``1 - cos(h_in, h_out)``
    averaged over calibration tokens: a block that barely turns the hidden state matters little.
    ``"kld"`` measures the KL divergence of the next-token distribution when the block alone is
    skipped (one forward pass per layer; slower, closer to what is lost). The result is a smaller
    dense model of the same family (config ``num_hidden_layers`` updated).

    Examples
    --------
    >>> r = ss.prune(lm, ss.LayerDrop(layers=4), calibration=texts)   # doctest: +SKIP
    >>> r.summary["dropped_layers"]                                    # doctest: +SKIP
    """

    layers: int = 1
    importance: str = "cosine"

    def validate(self) -> None:
        super().validate()
        _count("layers", self.layers)
        if self.importance not in ("cosine", "kld"):
            raise ConfigError(f"importance={self.importance!r} is not allowed; choose 'cosine' or 'kld'")


@register_config
@dataclasses.dataclass(frozen=True)
class WidthPruning(LMRecovery):
    """Remove FFN neurons and attention heads from every decoder layer, respecting grouped-query attention.

    FFN neuron ``j`` (row ``j`` of gate and up, column ``j`` of down) is scored by
    ``||act_j||_2 * ||W_down[:, j]||_2`` on the calibration text; every layer drops the same number
    (``ffn_ratio`` of ``intermediate_size``) so the config stays uniform. Heads: with
    ``heads="groups"`` whole key/value groups go with their query heads (``num_key_value_heads``
    shrinks); with ``heads="queries"`` the same number of query heads goes from every group (the
    KV heads stay). Heads are scored by the norm of their output into ``o_proj``. With ``refit=True``
    (the default) ``down_proj`` and ``o_proj`` are then refit by least squares on the calibration
    activations so the kept inputs absorb what the cut ones wrote (closed form, no training; the
    record says how much of the output error it removed per layer). The result is a plain
    transformers model (config updated) that saves, loads and generates as before.

    Examples
    --------
    >>> r = ss.prune(lm, ss.WidthPruning(ffn_ratio=0.25), calibration=texts)   # doctest: +SKIP
    """

    ffn_ratio: float = 0.25
    head_ratio: float = 0.0
    heads: str = "groups"
    refit: bool = True

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.refit, bool):
            raise ConfigError(f"refit={self.refit!r} must be True (least-squares refit of down_proj/o_proj after "
                              "the cut) or False")
        _fraction("ffn_ratio", self.ffn_ratio, "WidthPruning(ffn_ratio=0.25)")
        _fraction("head_ratio", self.head_ratio, "WidthPruning(head_ratio=0.25)")
        if self.heads not in ("groups", "queries"):
            raise ConfigError(f"heads={self.heads!r} is not allowed; choose 'groups' (whole KV groups) or "
                              "'queries' (query heads evenly per group)")
        if self.ffn_ratio == 0 and self.head_ratio == 0:
            raise ConfigError("WidthPruning with ffn_ratio=0 and head_ratio=0 removes nothing; set ffn_ratio=0.25 "
                              "or head_ratio=0.25")
