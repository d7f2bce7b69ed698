"""How a cascade's thresholds are scored: the data they are tuned on, and a bound on the accuracy drop.

The drop a cascade promises (``max_accuracy_drop``) is a statement about new data, so the thresholds
are tuned on predictions the stages did not train on (cross-fitted out-of-fold predictions over the
whole training set by default) and accepted only when a one-sided upper confidence bound on the
drop, not its point estimate, is within the allowance.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy.stats import beta
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.utils import _safe_indexing

from ..errors import DataError
from ._oof import OOFCache
from ._stage_checks import check_same_classes

__all__ = ["drop_upper_bound", "out_of_fold_probas", "fold_count", "cross_fit_with_cache"]


def drop_upper_bound(worse: np.ndarray, better: np.ndarray, n: int, risk: float) -> np.ndarray:
    """One-sided upper bound, at confidence ``1 - risk``, on the accuracy drop against the last stage.

    Row by row, the cascade is *worse* where only the last stage is right and *better* where only
    the cascade is; the drop is ``P(worse) - P(better)``. The bound is the exact (Clopper-Pearson)
    upper bound of ``P(worse)`` minus the exact lower bound of ``P(better)``, each at ``risk / 2``
    (a union bound: both hold together with probability at least ``1 - risk``). Exact binomial
    bounds stay valid for the handful of discordant rows that small allowances leave, where a
    normal approximation is too tight.

    Examples
    --------
    >>> round(float(drop_upper_bound(np.array([0]), np.array([0]), 1000, 0.05)[0]), 4)
    0.0037
    """
    worse = np.asarray(worse, dtype=float)
    better = np.asarray(better, dtype=float)
    a = risk / 2.0
    upper = np.where(worse >= n, 1.0, beta.ppf(1.0 - a, worse + 1.0, np.maximum(n - worse, 1e-12)))
    lower = np.where(better <= 0, 0.0, beta.ppf(a, np.maximum(better, 1e-12), n - better + 1.0))
    return upper - lower


def fold_count(y: np.ndarray, cv: int) -> int:
    """Folds that leave every class in every training fold: ``cv``, or fewer for a rare class."""
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise DataError(f"Cascade tunes thresholds on out-of-fold predictions, but class "
                        f"{classes[counts.argmin()].item()!r} has {counts.min()} sample; give every class at "
                        "least 2 samples or fit the stages yourself and pass prefit=True")
    return int(min(cv, counts.min()))


def out_of_fold_probas(stages: list[tuple[str, Any]], X: Any, y: np.ndarray, classes: np.ndarray, folds: int,
                       seed: int | None) -> list[np.ndarray]:
    """Each stage's cross-fitted probabilities for every row of ``X`` (columns in ``classes`` order)."""
    probas = [np.zeros((len(y), len(classes))) for _ in stages]
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for tr, va in split.split(np.zeros(len(y)), y):
        X_tr, X_va = _safe_indexing(X, tr), _safe_indexing(X, va)
        for s, (_, est) in enumerate(stages):
            model = clone(est).fit(X_tr, y[tr])
            cols = np.searchsorted(classes, np.asarray(model.classes_))
            probas[s][np.ix_(va, cols)] = np.asarray(model.predict_proba(X_va))
    return probas


def cross_fit_with_cache(stages: list[tuple[str, Any]], X: Any, y: np.ndarray, folds: int, seed: int | None,
                         cache: OOFCache) -> tuple[list[tuple[str, Any]], np.ndarray, list[np.ndarray]]:
    """The stages fitted on all rows and their out-of-fold probabilities, through a shared ``OOFCache``.

    The same stratified folds as :func:`out_of_fold_probas` (so the thresholds are the same), but a
    stage that another cascade given the same cache already cross-fitted on the same data and folds
    is not fitted again, and its fitted copy is shared, not duplicated.
    """
    X = np.asarray(X) if isinstance(X, list) else X
    split = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    key = cache.data_key(X, y, split)
    full = cache.full_fits(stages, X, y, data_key=key)
    fitted = [(name, full[name].models[0]) for name, _ in stages]
    classes = check_same_classes(fitted, "stage")
    oof, _, _ = cache.oof(stages, X, y, split, data_key=key, methods={name: "predict_proba" for name, _ in stages},
                          classes=classes)
    return fitted, classes, [oof[name] for name, _ in stages]


def stratified_split(X: Any, y: np.ndarray, fraction: float, seed: int | None):
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise DataError(f"Cascade holds out validation data per class, but class {classes[counts.argmin()].item()!r} has "
                        f"{counts.min()} sample; give every class at least 2 samples or fit the stages yourself "
                        "and pass prefit=True")
    n_val = max(int(round(fraction * len(y))), len(classes))
    if len(y) - n_val < len(classes):
        raise DataError(f"Cascade cannot hold out {n_val} of {len(y)} samples and still train on every class; "
                        "pass more data, a smaller validation_fraction, or prefit=True")
    split = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    tr, va = next(split.split(np.zeros(len(y)), y))
    return _safe_indexing(X, tr), _safe_indexing(X, va), y[tr], y[va]


def evaluate_grid(conf: np.ndarray, correct: np.ndarray, costs: np.ndarray, grids: list[np.ndarray],
                   overhead: np.ndarray | None = None, batch: int = 256) -> dict[str, np.ndarray]:
    """Accuracy, mean cost and stage shares of every threshold combination on validation data.

    ``costs`` are per sample at a full batch of ``batch`` rows, of which ``overhead`` is paid per
    call: a stage reached by a share ``r`` of rows costs ``(costs - overhead / batch) * r`` per row
    plus its overhead once for every batch with a deferred row, ``overhead * (1 - (1 - r) ** batch) / batch``.
    """
    overhead = np.zeros(len(costs)) if overhead is None else np.asarray(overhead, dtype=float)
    per_row = np.asarray(costs, dtype=float) - overhead / batch
    n_stages, n = correct.shape
    combos = np.array(list(itertools.product(*grids)), dtype=float).reshape(-1, n_stages - 1)
    acc = np.empty(len(combos))
    se = np.empty(len(combos))
    cost = np.empty(len(combos))
    share = np.empty((len(combos), n_stages))
    worse = np.empty(len(combos))
    better = np.empty(len(combos))
    rows = np.arange(n)
    for i, t in enumerate(combos):
        answer = np.full(n, n_stages - 1)
        pending = np.ones(n, dtype=bool)
        for s in range(n_stages - 1):
            take = pending & (conf[s] > t[s])
            answer[take] = s
            pending &= ~take
        right = correct[answer, rows]
        acc[i] = right.mean()
        worse[i] = np.count_nonzero(~right & correct[-1])
        better[i] = np.count_nonzero(right & ~correct[-1])
        # standard error of the accuracy difference against the last stage, paired row by row
        se[i] = float(np.std(right.astype(float) - correct[-1], ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        share[i] = np.bincount(answer, minlength=n_stages) / n
        reach = 1.0 - np.concatenate([[0.0], np.cumsum(share[i])[:-1]])  # share that runs stage s
        cost[i] = float(reach @ per_row + overhead @ (1.0 - (1.0 - reach) ** batch) / batch)
    return {"thresholds": combos, "accuracy": acc, "cost": cost, "stage_share": share, "drop_se": se,
            "worse": worse, "better": better, "pareto": pareto(acc, cost)}


def pareto(acc: np.ndarray, cost: np.ndarray) -> np.ndarray:
    order = np.lexsort((-acc, cost))
    mask = np.zeros(len(acc), dtype=bool)
    best = -np.inf
    for i in order:
        if acc[i] > best:
            mask[i] = True
            best = acc[i]
    return mask
