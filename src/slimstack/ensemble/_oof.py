"""The shared cache of out-of-fold predictions, and the fold plumbing every combiner uses.

Voting weights, ensemble selection and stacking all need the same thing: each member's
predictions on rows it was not trained on. :class:`OOFCache` fits each member once per fold,
keeps the fold models and their out-of-fold outputs keyed by (member, data, folds), and serves
any number of combiners from them. Pass one cache to several ensembles (``cache=``) and the
second and later ones fit nothing.
"""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    check_cv,
)

from ..errors import ConfigError, DataError
from ._members import is_frozen

__all__ = ["OOFCache", "MemberFit", "make_folds", "member_output", "response_method"]


def make_folds(cv: Any, X, y, groups=None, *, classifier: bool, random_state=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Turn ``cv`` (an int, a splitter object or an iterable of splits) into a list of index pairs.

    An int gives shuffled stratified folds for classifiers (group-aware ``StratifiedGroupKFold``
    when ``groups`` is given) and shuffled ``KFold`` / ``GroupKFold`` for regressors, all seeded by
    ``random_state``. A splitter object (``GroupKFold``, ``TimeSeriesSplit``, ...) is used as given
    and receives ``groups``.
    """
    n = len(y)
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if cv < 2:
            raise ConfigError(f"cv={cv} is too small; use an int >= 2 or a splitter such as KFold(5).")
        if cv > n:
            raise DataError(f"cv={cv} is larger than the number of samples (n_samples={n}); use cv <= {n}.")
        if classifier:
            _, counts = np.unique(y, return_counts=True)
            if cv > counts.min() and counts.min() < 2:
                raise DataError(
                    f"cv={cv} is larger than the smallest class, which has {counts.min()} sample; every fold "
                    "needs each class. Collect more samples of that class, or drop it.")
            if cv > counts.min():
                # Fewer folds still give every row an out-of-fold prediction; say so rather than refuse
                # (scikit-learn's own estimator checks fit 10-row sets with 3-row classes).
                warnings.warn(f"cv={cv} is larger than the smallest class, which has {counts.min()} samples; "
                              f"using cv={counts.min()} folds so every fold holds each class. Pass cv <= "
                              f"{counts.min()} to silence this, or collect more samples of that class.",
                              UserWarning, stacklevel=4)
                cv = int(counts.min())
            splitter = (StratifiedGroupKFold(cv, shuffle=True, random_state=random_state) if groups is not None
                        else StratifiedKFold(cv, shuffle=True, random_state=random_state))
        else:
            splitter = (GroupKFold(cv) if groups is not None
                        else KFold(cv, shuffle=True, random_state=random_state))
    elif hasattr(cv, "split"):
        splitter = cv
    else:
        try:
            splitter = check_cv(cv)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cv={cv!r} is not usable: {exc}. Use an int, a splitter or a list of "
                              "(train, test) index pairs.") from exc
    folds = [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X, y, groups)]
    if not folds:
        raise ConfigError(f"cv={cv!r} produced no folds; use a splitter with at least one split.")
    return folds


def response_method(est: Any, wanted: str) -> str:
    """Resolve "auto" to the richest output the estimator has: proba, then decision, then labels."""
    if wanted != "auto":
        return wanted
    for name in ("predict_proba", "decision_function", "predict"):
        if hasattr(est, name):
            return name
    return "predict"


def member_output(est: Any, X, method: str, classes: np.ndarray | None) -> np.ndarray:
    """One model's output, with probability columns aligned to the ensemble's ``classes``.

    A fold model that never saw a class gets a zero column for it; a 1-D binary decision function
    stays 1-D. Regressors (``classes is None``) return 1-D predictions.
    """
    out = np.asarray(getattr(est, method)(X))
    if classes is None or method == "predict":
        return out
    est_classes = np.asarray(est.classes_)
    if method == "decision_function" and out.ndim == 1:
        return out
    if len(est_classes) == len(classes) and np.array_equal(est_classes, classes):
        return out
    full = np.zeros((len(out), len(classes)), dtype=float)
    full[:, np.searchsorted(classes, est_classes)] = out if out.ndim == 2 else out[:, None]
    return full


@dataclass
class MemberFit:
    """The fitted copies of one member: fold models (averaged at prediction) or one model."""

    name: str
    models: list
    frozen: bool = False
    fit_seconds: float | None = None  # mean wall time of one fold fit, measured in the worker

    def output(self, X, method: str, classes: np.ndarray | None) -> np.ndarray:
        if method == "predict" and classes is not None and len(self.models) > 1:
            # Labels do not average; vote the fold models' labels.
            votes = np.stack([member_output(m, X, "predict", classes) for m in self.models])
            idx = np.searchsorted(classes, votes)
            counts = np.apply_along_axis(np.bincount, 0, idx, minlength=len(classes))
            return classes[np.argmax(counts, axis=0)]
        outs = [member_output(m, X, method, classes) for m in self.models]
        return outs[0] if len(outs) == 1 else np.mean(outs, axis=0)


@dataclass
class _Entry:
    models: list
    frozen: bool
    oof: dict[str, np.ndarray] = field(default_factory=dict)
    fold_preds: dict[str, list] = field(default_factory=dict)  # per method: each fold model on its test rows
    fit_seconds: float | None = None


def _fit_predict(est, X, y, train, test, fit_params, method, classes):
    """Fit on ``train`` and predict ``test`` in the same worker, as ``cross_val_predict`` does.

    Returns the model, its predictions and the fit's wall time (read by ``refit="auto"``).
    """
    t0 = time.perf_counter()
    model = _fit_one(est, X, y, train, fit_params)
    seconds = time.perf_counter() - t0
    pred = None if method is None else member_output(model, _rows(X, test), method, classes)
    return model, pred, seconds


def _fit_one(est, X, y, train, fit_params):
    model = clone(est)
    if train is None:
        return model.fit(X, y, **fit_params)
    params = {k: (v[train] if hasattr(v, "__len__") and len(v) == len(y) else v) for k, v in fit_params.items()}
    return model.fit(_rows(X, train), _rows(y, train), **params)


def _rows(a, idx):
    return a.iloc[idx] if hasattr(a, "iloc") else a[idx]


class OOFCache:
    """Fold models and out-of-fold predictions shared by every combiner that is given this cache.

    Members are keyed by their parameters (``joblib.hash`` of the unfitted estimator), the data and
    the fold indices, so the same member on the same folds is fitted once whichever ensemble asks.
    The cache is deliberately not copied by ``clone``/``deepcopy``: clones share it.

    Attributes
    ----------
    n_fits : int
        Model fits the cache has run (frozen members count zero).
    n_hits : int
        Member requests answered without fitting.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> import slimstack as ss
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> members = [("nb", GaussianNB()), ("dt", DecisionTreeClassifier(max_depth=3, random_state=0))]
    >>> cache = ss.OOFCache()
    >>> _ = ss.VotingEnsemble(members, weights="learn", cv=5, random_state=0, cache=cache).fit(X, y)
    >>> _ = ss.StackingEnsemble(members, cv=5, random_state=0, cache=cache).fit(X, y)
    >>> cache.n_fits  # 2 members x 5 folds, shared by both ensembles
    10
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._full: dict[str, Any] = {}
        self.n_fits = 0
        self.n_hits = 0

    def __sklearn_clone__(self) -> OOFCache:
        return self

    def __deepcopy__(self, memo) -> OOFCache:
        return self

    def __repr__(self) -> str:
        return f"OOFCache(members={len(self._entries)}, n_fits={self.n_fits}, n_hits={self.n_hits})"

    def clear(self) -> None:
        self._entries.clear()
        self._full.clear()

    @staticmethod
    def data_key(X, y, folds, groups=None) -> str:
        """A fingerprint of the training data and fold indices, computed once per ``fit``."""
        return joblib.hash((X, y, groups, [(tr, te) for tr, te in folds]))

    def fold_fits(self, members: list[tuple[str, Any]], X, y, folds, *, data_key: str, n_jobs=None,
                  fit_params: dict | None = None, methods: dict[str, str] | None = None,
                  classes: np.ndarray | None = None, with_full: bool = False) -> dict[str, MemberFit]:
        """Fit every member on every fold's training rows (frozen members: once, on nothing new).

        With ``methods``, each worker also predicts its fold's test rows, so the out-of-fold
        predictions are computed in parallel next to the fits. ``with_full`` adds each member's
        fit on all rows (for ``refit=True``) to the same dispatch, largest tasks first, so the
        workers stay busy instead of waiting at a barrier between the two stages.
        """
        fit_params = fit_params or {}
        methods = methods or {}
        keys = {name: self._key(est, data_key, fit_params) for name, est in members}
        todo: list[tuple[str, Any, Any]] = []
        if with_full:
            todo += [(name, est, "full") for name, est in members
                     if not is_frozen(est) and "full:" + keys[name] not in self._full]
        for name, est in members:
            if keys[name] in self._entries:
                self.n_hits += 1
            elif is_frozen(est):
                todo.append((name, est, None))
            else:
                todo.extend((name, est, fold) for fold in range(len(folds)))
        if todo:
            results = joblib.Parallel(n_jobs=n_jobs, batch_size=1)(
                joblib.delayed(_fit_predict)(est, X, y, *self._task_rows(f, folds), fit_params,
                                             methods.get(name) if isinstance(f, int) else None, classes)
                for name, est, f in todo)
            grouped: dict[str, list] = {}
            for (name, est, f), result in zip(todo, results):
                if f == "full":
                    self._full["full:" + keys[name]] = result[0]
                else:
                    grouped.setdefault(name, []).append(result)
                self.n_fits += f is not None
            for name, est in members:
                if name in grouped:
                    entry = _Entry([m for m, _, _ in grouped[name]], is_frozen(est))
                    entry.fit_seconds = float(np.mean([t for _, _, t in grouped[name]]))
                    if not entry.frozen and methods.get(name):
                        entry.fold_preds[methods[name]] = [p for _, p, _ in grouped[name]]
                    self._entries[keys[name]] = entry
        return {name: MemberFit(name, self._entries[keys[name]].models, self._entries[keys[name]].frozen,
                                self._entries[keys[name]].fit_seconds) for name, _ in members}

    @staticmethod
    def _task_rows(f, folds):
        if isinstance(f, int):
            return folds[f]
        return None, None  # a frozen member's no-op fit, or a fit on all rows

    def oof(self, members: list[tuple[str, Any]], X, y, folds, *, data_key: str, methods: dict[str, str],
            classes: np.ndarray | None, n_jobs=None, fit_params: dict | None = None, with_full: bool = False,
            ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, MemberFit]]:
        """Out-of-fold outputs per member, the mask of rows that some fold predicted, and the fits.

        Rows in several test folds (repeated splitters) get the mean of their predictions; rows in
        none (the first block of ``TimeSeriesSplit``) are marked False in the mask.
        """
        fits = self.fold_fits(members, X, y, folds, data_key=data_key, n_jobs=n_jobs, fit_params=fit_params,
                              methods=methods, classes=classes, with_full=with_full)
        n = len(y)
        covered = np.zeros(n, dtype=int)
        for _, te in folds:
            covered[te] += 1
        out: dict[str, np.ndarray] = {}
        for name, est in members:
            entry = self._entries[self._key(est, data_key, fit_params or {})]
            method = methods[name]
            if method not in entry.oof:
                entry.oof[method] = self._compute_oof(entry, X, folds, method, classes, covered)
            out[name] = entry.oof[method]
        return out, covered > 0, fits

    def full_fits(self, members: list[tuple[str, Any]], X, y, *, data_key: str, n_jobs=None,
                  fit_params: dict | None = None) -> dict[str, MemberFit]:
        """Each member fitted once on all rows (``refit=True``), cached like the fold models.

        ``data_key`` is the one the fold fits used, so fits made by ``oof(..., with_full=True)``
        are found here.
        """
        fit_params = fit_params or {}
        keys = {name: "full:" + self._key(est, data_key, fit_params) for name, est in members}
        todo = [(name, est) for name, est in members if keys[name] not in self._full]
        self.n_hits += len(members) - len(todo)
        if todo:
            fitted = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_fit_one)(est, X, y, None, fit_params)
                                                    for _, est in todo)
            for (name, est), model in zip(todo, fitted):
                self._full[keys[name]] = model
                self.n_fits += not is_frozen(est)
        return {name: MemberFit(name, [self._full[keys[name]]], is_frozen(est)) for name, est in members}

    @staticmethod
    def _key(est, data_key: str, fit_params: dict) -> str:
        return joblib.hash((type(est).__name__, est if is_frozen(est) else est.get_params(deep=True),
                            data_key, fit_params))

    @staticmethod
    def _compute_oof(entry: _Entry, X, folds, method, classes, covered) -> np.ndarray:
        if entry.frozen:
            return member_output(entry.models[0], X, method, classes)
        preds = entry.fold_preds.get(method) or [member_output(m, _rows(X, te), method, classes)
                                                 for m, (_, te) in zip(entry.models, folds)]
        parts = [(te, p) for p, (_, te) in zip(preds, folds)]
        first = parts[0][1]
        if method == "predict" and classes is not None:
            out = np.empty(len(covered), dtype=first.dtype)
            for te, p in parts:  # labels: the last fold wins for repeated rows
                out[te] = p
            return out
        acc = np.zeros((len(covered), *first.shape[1:]), dtype=float)
        for te, p in parts:
            acc[te] += p
        denom = np.maximum(covered, 1).reshape((-1,) + (1,) * (acc.ndim - 1))
        return acc / denom
