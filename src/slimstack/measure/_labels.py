"""Match a data set's own labels to the classes a fitted classifier knows.

A scikit-learn classifier's ``predict_proba`` column ``j`` is its ``classes_[j]``, whatever labels the
data being scored happens to hold (a file without label 0, string labels, a file of one class).
Scoring therefore maps each row's label to its column in the model's ``classes_``; rows whose label
the model does not know count as wrong, as in scikit-learn's own ``score``. Models without
``classes_`` (torch modules) output one column per class id, which is the data's own label.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["model_classes", "class_index", "unknown_classes"]


def model_classes(adapter: Any) -> np.ndarray | None:
    classes = getattr(getattr(adapter, "model", None), "classes_", None)
    if classes is None:
        return None
    classes = np.asarray(classes)
    return classes if classes.ndim == 1 else None


def class_index(classes: np.ndarray, values: np.ndarray, missing: int = -1) -> np.ndarray:
    """Position of each value in ``classes`` (``missing`` where a value is not one of them)."""
    where = {c: i for i, c in enumerate(classes.tolist())}
    return np.array([where.get(v, missing) for v in np.asarray(values).tolist()], dtype=np.int64)


def unknown_classes(adapter: Any, data: Any) -> list[Any]:
    """The data's labels that the model's ``classes_`` does not hold (empty for models without it)."""
    classes = model_classes(adapter)
    if classes is None or data.task != "classification":
        return []
    labels = np.asarray(data.labels)
    return sorted({v for v, i in zip(labels.tolist(), class_index(classes, labels).tolist()) if i < 0}, key=str)
