"""Checks shared by the estimators that route inputs between members (cascades, hierarchies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError, ModelError

__all__ = ["check_estimator_list", "check_same_classes", "is_fitted", "row_indexable"]


def check_estimator_list(items: Any, param: str, owner: str) -> list[str]:
    """Validate a ``[(name, estimator), ...]`` list; return the names."""
    if not isinstance(items, list | tuple) or len(items) == 0:
        raise ConfigError(f"{owner}({param}=...) must be a non-empty list of (name, estimator) pairs, got {items!r}")
    names: list[str] = []
    for i, item in enumerate(items):
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
            raise ConfigError(f"{owner}: {param}[{i}] = {item!r} is not a (name, estimator) pair; "
                              f"write {param}=[('small', model_a), ('big', model_b)]")
        name, est = item
        if name in names:
            raise ConfigError(f"{owner}: the name {name!r} appears twice in {param}; give every entry its own name")
        if "__" in name:
            raise ConfigError(f"{owner}: name {name!r} contains '__', which get_params/set_params reserve; rename it")
        if not hasattr(est, "predict_proba"):
            raise ModelError(f"{owner}: {param} entry {name!r} ({type(est).__name__}) has no predict_proba; "
                             "use a probabilistic classifier (e.g. SVC(probability=True), ss.TorchClassifier)")
        names.append(name)
    return names


def check_same_classes(fitted: Sequence[tuple[str, Any]], what: str) -> np.ndarray:
    """Every fitted member must predict the same classes, in the same order; return them."""
    first_name, first = fitted[0]
    classes = np.asarray(first.classes_)
    for name, est in fitted[1:]:
        other = np.asarray(getattr(est, "classes_", None))
        if other.shape != classes.shape or not np.array_equal(other, classes):
            raise ModelError(f"{what} {name!r} predicts classes {other.tolist()} but {what} {first_name!r} predicts "
                             f"{classes.tolist()}; fit every {what} on the same labels")
    return classes


def is_fitted(est: Any) -> bool:
    try:
        check_is_fitted(est)
    except (SklearnNotFittedError, TypeError):
        return False
    return hasattr(est, "classes_")


def row_indexable(X: Any) -> Any:
    """Sparse formats without row indexing (dia, coo, ...) become CSR; everything else passes as is.

    Routers pass rows on to members unchanged, so members keep deciding what input they accept.
    """
    if sp.issparse(X):
        return X if X.format in ("csr", "csc") else X.tocsr()
    if isinstance(X, np.ndarray | list) or hasattr(X, "iloc"):
        return X
    if hasattr(X, "__array__"):  # array-likes that do not index rows themselves
        return np.asarray(X)
    return X
