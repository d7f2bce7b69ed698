"""Quality of a model on a dataset for pruning decisions: ``ss.measure.score``, and the tolerance test.

Sensitivity analysis and tree pruning score through the one public scoring function, so a
pruning record's quality means what ``ss.measure`` reports: accuracy (classification), R^2
(regression), Spearman (sentence pairs).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["quality", "allowed_drop", "tolerance_for"]


def quality(model: Any, data: Any) -> float:
    """``ss.measure.score(model, data)`` with the dataset's primary metric (higher is better for each)."""
    from ..datasets import Dataset
    from ..measure import score

    if not isinstance(data, Dataset):
        raise DataError(f"scoring a pruned model needs a slimstack Dataset (e.g. ss.datasets.load('digits', "
                        f"split='val') or ss.datasets.from_arrays(X, y)), got {type(data).__name__}")
    if data.task == "classification" and _is_sklearn_regressor(model):
        # a regressor fitted on numeric labels predicts numbers: score it as regression on them (R^2)
        data = dataclasses.replace(data, task="regression", y=np.asarray(data.y, dtype=np.float32), classes=None)
    return score(model, data)


def _is_sklearn_regressor(model: Any) -> bool:
    from sklearn.base import is_regressor

    return hasattr(model, "get_params") and is_regressor(model)


def allowed_drop(baseline: float, tolerance: float, *, relative: bool = True) -> float:
    """The quality a pruned model may lose: ``tolerance`` of the baseline's (relative) or in metric units."""
    return tolerance * abs(baseline) if relative else tolerance


def tolerance_for(own: tuple[float, bool] | None, given: float | None, config: Any) -> tuple[float, bool] | None:
    """``(tolerance, relative)``: ``ss.prune(tolerance=...)`` (relative) or the config's own, never two that differ."""
    if given is None:
        return own
    if own is not None and own != (float(given), True):
        field = "tolerance" if own[1] else "absolute_tolerance"
        raise ConfigError(f"ss.prune(tolerance={given}) and {type(config).__name__}({field}={own[0]}) disagree; "
                          "set the tolerance in one place")
    return float(given), True
