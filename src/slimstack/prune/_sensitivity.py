"""Sensitivity analysis: quality against pruning ratio for each layer, and ratios that meet a tolerance.

Each unit (a layer's channel group, a transformer layer's heads or FFN) is pruned alone at each
trial ratio on a copy of the model, without recovery, and scored on validation data with
``ss.measure.score``. A unit then gets the largest trial ratio, up to the configured ceiling, whose
drop stays within the allowed drop (``tolerance`` times the baseline's quality, or an absolute
drop). Drops do not add up exactly, so the combined model is checked too, and all ratios step down
(x0.75) until it meets the tolerance or three tries are spent; the record says which happened.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ._eval import allowed_drop, quality

__all__ = ["sensitivity", "ratios_within"]


def sensitivity(model: nn.Module, backend: Any, data: Any, trial_ratios: tuple[float, ...]) -> dict[str, Any]:
    """``{"baseline": q, "curves": {unit: {ratio: quality}}}`` with every unit pruned alone."""
    base = quality(model, data)
    curves: dict[str, dict[float, float]] = {}
    for unit, ceiling in backend.units.items():
        curves[unit] = {}
        for r in sorted(set(trial_ratios) | {ceiling}):
            if r <= 0:
                continue
            trial = copy.deepcopy(model)
            backend.apply(trial, {unit: r})
            curves[unit][round(float(r), 4)] = quality(trial, data)
    return {"baseline": base, "curves": curves}


def ratios_within(model: nn.Module, backend: Any, data: Any, tolerance: float, trial_ratios: tuple[float, ...], *,
                  relative: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    """Per-unit ratios whose quality drop stays within the tolerance, and the analysis behind them."""
    analysis = sensitivity(model, backend, data, trial_ratios)
    base = analysis["baseline"]
    drop = allowed_drop(base, tolerance, relative=relative)
    ratios = {}
    for unit, ceiling in backend.units.items():
        ok = [r for r, q in analysis["curves"][unit].items() if r <= ceiling + 1e-9 and base - q <= drop]
        ratios[unit] = max(ok, default=0.0)
    tries = []
    for _ in range(4):
        trial = copy.deepcopy(model)
        backend.apply(trial, ratios)
        q = quality(trial, data)
        tries.append({"ratios": dict(ratios), "quality": q})
        if base - q <= drop:
            break
        ratios = {u: round(r * 0.75, 4) for u, r in ratios.items()}
    analysis.update(tolerance=tolerance, tolerance_kind="relative" if relative else "absolute", allowed_drop=drop,
                    tries=tries, met=base - tries[-1]["quality"] <= drop)
    analysis["curves"] = {u: {str(r): q for r, q in c.items()} for u, c in analysis["curves"].items()}
    return tries[-1]["ratios"], analysis
