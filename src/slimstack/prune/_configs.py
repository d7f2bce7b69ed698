"""Pruning configs: what to remove (one frozen dataclass per technique) and how to recover.

Each config is data: it round-trips through ``to_dict``/``ss.config_from_dict`` and checks its
fields at construction, so a bad value fails where it is written, with the fix in the message.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from .._config import Config, register_config
from .._validate import check_choice, check_range, is_number
from ..errors import ConfigError
from ._importance import IMPORTANCES

__all__ = ["MagnitudePruning", "NMPruning", "StructuredPruning", "TreePruning", "RECOVERY", "IMPORTANCE"]

RECOVERY = ("none", "finetune", "distill")
IMPORTANCE = tuple(IMPORTANCES)  # the registered importance names (see _importance.register_importance)


def _ratio(field: str, value: Any, example: str) -> None:
    """A fraction removed: 1 would remove everything."""
    check_range(field, value, 0, 1, high_open=True, example=example)


def _positive_int(field: str, value: Any) -> None:
    if not (is_number(value) and isinstance(value, int)) or value < 1:
        raise ConfigError(f"{field}={value!r} must be a positive integer")


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Recovery(Config):
    """Fields shared by every network pruning config: recovery after pruning, layers left alone, seed.

    ``recovery="finetune"`` trains on ``data`` for ``recovery_epochs`` epochs (classifiers) or
    ``recovery_steps`` steps (sentence encoders, on scored pairs); ``"distill"`` trains the pruned
    model to match the unpruned one (soft logits for classifiers, embeddings for encoders).
    """

    kind: ClassVar[str] = "prune"

    recovery: str = "none"
    recovery_epochs: int = 3
    recovery_steps: int = 200
    recovery_lr: float | None = None  # None: 3e-3 for small networks, 1e-4 for transformers
    ignore: tuple[str, ...] = ()
    seed: int = 0

    def validate(self) -> None:
        c = type(self).__name__
        check_choice(f"{c}.recovery", self.recovery, RECOVERY)
        _positive_int(f"{c}.recovery_epochs", self.recovery_epochs)
        _positive_int(f"{c}.recovery_steps", self.recovery_steps)
        if self.recovery_lr is not None:
            check_range(f"{c}.recovery_lr", self.recovery_lr, 0, low_open=True, example="3e-3, or None (automatic)")
        if isinstance(self.ignore, str):
            object.__setattr__(self, "ignore", (self.ignore,))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        if not all(isinstance(n, str) for n in self.ignore):
            raise ConfigError(f"ignore={self.ignore!r} must list module names as strings, e.g. ('classifier.3',)")
        check_range(f"{c}.seed", self.seed, integer=True, example="seed=0")


@register_config
@dataclasses.dataclass(frozen=True)
class MagnitudePruning(_Recovery):
    """Unstructured pruning: zero the weights of smallest magnitude.

    Parameters
    ----------
    sparsity : float in [0, 1)
        Fraction of the weights of each Linear/Conv layer (``scope="layer"``) or of all of them
        together (``scope="global"``) that become zero.
    schedule : {"oneshot", "iterative"}
        ``"iterative"`` reaches ``sparsity`` in ``steps`` steps along the polynomial schedule of
        Zhu and Gupta (2017), fine-tuning between steps (needs ``recovery`` other than "none").

    The returned model holds real zeros, and ``ss.save`` stores only the surviving values plus a
    bitmask, so the file shrinks. Dense kernels do not get faster from zeros: see ``StructuredPruning``.

    Examples
    --------
    >>> r = ss.prune(model, ss.MagnitudePruning(sparsity=0.8, scope="global"))   # doctest: +SKIP
    """

    sparsity: float = 0.5
    scope: str = "layer"
    schedule: str = "oneshot"
    steps: int = 3

    def validate(self) -> None:
        c = type(self).__name__
        super().validate()
        _ratio(f"{c}.sparsity", self.sparsity, "MagnitudePruning(sparsity=0.8)")
        check_choice(f"{c}.scope", self.scope, ("layer", "global"))
        check_choice(f"{c}.schedule", self.schedule, ("oneshot", "iterative"))
        _positive_int(f"{c}.steps", self.steps)
        if self.schedule == "iterative" and self.recovery == "none":
            raise ConfigError("schedule='iterative' fine-tunes between steps, but recovery='none'; set "
                              "recovery='finetune' or 'distill', or use schedule='oneshot'")


@register_config
@dataclasses.dataclass(frozen=True)
class NMPruning(_Recovery):
    """Semi-structured N:M pruning: in every group of ``m`` consecutive input weights keep the ``n`` largest.

    2:4 is the pattern sparse tensor cores run at twice the dense rate; on CPU the gain is the
    smaller file (values plus a bitmask). Layers whose input size is not a multiple of ``m`` are
    skipped and recorded.

    Examples
    --------
    >>> r = ss.prune(model, ss.NMPruning(n=2, m=4))   # doctest: +SKIP
    """

    n: int = 2
    m: int = 4

    def validate(self) -> None:
        c = type(self).__name__
        super().validate()
        _positive_int(f"{c}.n", self.n)
        _positive_int(f"{c}.m", self.m)
        if not self.n < self.m:
            raise ConfigError(f"n={self.n} must be smaller than m={self.m} (keep n of every m weights), e.g. n=2, m=4")


@register_config
@dataclasses.dataclass(frozen=True)
class StructuredPruning(_Recovery):
    """Remove whole conv channels, linear neurons, attention heads and FFN neurons.

    The result is a plain dense model with smaller layers, so it is smaller and faster everywhere.
    Coupled layers (residual additions, BatchNorm, concatenation) stay consistent through
    Torch-Pruning's dependency graph; Hugging Face BERT encoders are pruned by slimstack itself
    (whole heads and FFN neurons).

    Parameters
    ----------
    ratio : float in [0, 1)
        Fraction of channels/neurons removed per layer (the ceiling per layer when ``tolerance`` is set).
    importance : {"l1", "l2", "taylor", "random"}
        How channels are ranked; "taylor" uses gradients on ``data``; "random" is the baseline to beat.
    layer_ratios : dict, optional
        ``{module name: ratio}`` overriding ``ratio`` for those layers.
    head_ratio : float in [0, 1)
        Fraction of attention heads removed per transformer layer (at least one is always kept).
    round_to : int, optional
        Keep channel counts a multiple of this (e.g. 8) for fast kernels.
    global_pruning : bool
        Rank channels across layers instead of within each layer.
    tolerance : float, optional
        Measure each layer's sensitivity on the validation data (``val=``) and give layers whose
        quality drop would exceed ``tolerance`` a lower ratio. Relative to the unpruned model's
        quality, as everywhere in slimstack: 0.01 allows losing at most 1 % of the baseline's
        metric (accuracy 0.95 may fall to 0.9405).
    absolute_tolerance : float, optional
        The same analysis with the drop given in metric units instead (0.01 = one accuracy
        point), the meaning ``tolerance`` had before slimstack 0.x made it relative. Set at most
        one of the two.

    Examples
    --------
    >>> r = ss.prune(cnn, ss.StructuredPruning(ratio=0.5, round_to=8), example_inputs=x)   # doctest: +SKIP
    >>> r = ss.prune(enc, ss.StructuredPruning(ratio=0.5, head_ratio=0.25, importance="taylor"),
    ...              data=ss.datasets.load("stsb"))                                          # doctest: +SKIP
    """

    ratio: float = 0.5
    importance: str = "l2"
    layer_ratios: dict[str, float] | None = None
    head_ratio: float = 0.0
    round_to: int | None = None
    global_pruning: bool = False
    tolerance: float | None = None
    absolute_tolerance: float | None = None
    sensitivity_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    taylor_batches: int = 8

    def validate(self) -> None:
        c = type(self).__name__
        super().validate()
        _ratio(f"{c}.ratio", self.ratio, "StructuredPruning(ratio=0.5)")
        _ratio(f"{c}.head_ratio", self.head_ratio, "StructuredPruning(head_ratio=0.25)")
        check_choice(f"{c}.importance", self.importance, tuple(IMPORTANCES))
        if self.layer_ratios is not None:
            if not isinstance(self.layer_ratios, dict):
                raise ConfigError(f"layer_ratios={self.layer_ratios!r} must be a dict of module name -> ratio, "
                                  "e.g. {'features.3': 0.3}")
            for name, r in self.layer_ratios.items():
                _ratio(f"{c}.layer_ratios[{name!r}]", r, "{'features.3': 0.3}")
        if self.round_to is not None:
            _positive_int(f"{c}.round_to", self.round_to)
        for field in ("tolerance", "absolute_tolerance"):
            if getattr(self, field) is not None:
                check_range(f"{c}.{field}", getattr(self, field), 0, example=f"{field}=0.01, or None")
        if self.tolerance is not None and self.absolute_tolerance is not None:
            raise ConfigError(f"tolerance={self.tolerance} and absolute_tolerance={self.absolute_tolerance} are both "
                              "set; keep one (tolerance is relative to the baseline, absolute_tolerance in metric "
                              "units)")
        object.__setattr__(self, "sensitivity_ratios", tuple(self.sensitivity_ratios))
        for r in self.sensitivity_ratios:
            _ratio(f"{c}.sensitivity_ratios", r, "(0.25, 0.5, 0.75)")
        _positive_int(f"{c}.taylor_batches", self.taylor_batches)

    @property
    def tolerance_rule(self) -> tuple[float, bool] | None:
        """``(tolerance, relative)`` when a tolerance is set (either field), else None."""
        if self.tolerance is not None:
            return float(self.tolerance), True
        if self.absolute_tolerance is not None:
            return float(self.absolute_tolerance), False
        return None


@register_config
@dataclasses.dataclass(frozen=True)
class TreePruning(Config):
    """Minimal cost-complexity pruning of fitted scikit-learn trees and forests.

    The fitted trees are pruned in place of a copy (no refit), with the impurity the model was
    trained with (Gini or entropy). ``ccp_alpha="auto"`` tries ``n_alphas`` values along the trees'
    pruning paths (alpha 0, the unpruned forest, is one of them) and keeps the largest whose score
    on the validation data (``val=``, or ``data=`` as before) stays within ``tolerance`` of the best
    score on that path, relative as everywhere: 0.005 allows 0.5 % below the best.

    Examples
    --------
    >>> r = ss.prune(forest, ss.TreePruning(tolerance=0.005), data=ds_val)   # doctest: +SKIP
    >>> r.record[0].before, r.record[0].after                               # doctest: +SKIP
    """

    kind: ClassVar[str] = "prune"

    ccp_alpha: float | str = "auto"
    n_alphas: int = 30
    tolerance: float = 0.0

    def validate(self) -> None:
        c = type(self).__name__
        a = self.ccp_alpha
        if not (a == "auto" or (isinstance(a, int | float) and not isinstance(a, bool) and a >= 0)):
            raise ConfigError(f"ccp_alpha={a!r} must be 'auto' or a non-negative number, e.g. 0.001")
        _positive_int(f"{c}.n_alphas", self.n_alphas)
        check_range(f"{c}.tolerance", self.tolerance, 0, 1, example="tolerance=0.005 (0.5 % below the best)")
