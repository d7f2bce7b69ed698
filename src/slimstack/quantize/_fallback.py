"""Accuracy-aware fallback: keep in float the fewest layers that bring quality back within tolerance.

What to keep (this module), how to build a variant (a backend's ``build``) and how to score it (an
``evaluate`` callable) are kept apart, so the same search runs over torch modules and ONNX nodes.
Each layer's cost is the relative quality loss when it alone is quantized; layers are restored to
float in decreasing order of cost, and a binary search finds the smallest number that fits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["relative_loss", "accuracy_aware"]


def relative_loss(base: float, value: float, higher_is_better: bool = True) -> float:
    """Quality lost relative to ``base`` (0.01 = 1% worse); negative when the variant is better."""
    scale = max(abs(base), 1e-12)
    return (base - value) / scale if higher_is_better else (value - base) / scale


def accuracy_aware(units: list[str], build: Callable[[frozenset[str]], Any], evaluate: Callable[[Any], float],
                   base: float, tolerance: float, higher_is_better: bool = True) -> dict[str, Any]:
    """Search the float set; returns ``{"model", "build", "float", "costs", "quality", "loss", "evaluations"}``.

    ``build(float_units)`` returns ``(model, records)`` with ``float_units`` left in float;
    ``evaluate(model)`` returns the quality.
    """
    loss = lambda q: relative_loss(base, q, higher_is_better)  # noqa: E731
    trials: list[dict[str, Any]] = []

    def trial(keep: frozenset[str]) -> tuple[Any, float]:
        built = build(keep)
        q = evaluate(built[0])
        trials.append({"float": sorted(keep), "quality": q, "loss": loss(q)})
        return built, q

    built, q = trial(frozenset())
    result = {"build": built, "float": [], "costs": {}, "quality": q, "loss": loss(q), "met": loss(q) <= tolerance}
    if loss(q) <= tolerance or not units:
        result["evaluations"] = trials
        return result
    costs: dict[str, float] = {}
    everything = frozenset(units)
    for u in units:
        _, qu = trial(everything - {u})
        costs[u] = loss(qu)
    ranked = sorted(units, key=lambda u: -costs[u])
    lo, hi = 1, len(ranked)
    best: tuple[int, Any, float] | None = None
    while lo <= hi:  # smallest k whose top-k-in-float variant is within tolerance
        k = (lo + hi) // 2
        b, qk = trial(frozenset(ranked[:k]))
        if loss(qk) <= tolerance:
            best, hi = (k, b, qk), k - 1
        else:
            lo = k + 1
    if best is None:  # even all-float fails: quality noise exceeds tolerance; keep everything float
        b, qk = trial(everything)
        best = (len(ranked), b, qk)
    k, b, qk = best
    result.update(build=b, float=ranked[:k], costs=costs, quality=qk, loss=loss(qk), met=loss(qk) <= tolerance)
    result["evaluations"] = trials
    return result
