"""Out-of-fold stacking that keeps the fold models, with passthrough, layers and a leakage guard."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.model_selection import (
    GroupShuffleSplit,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
    TimeSeriesSplit,
    cross_val_predict,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError
from ._base import TransformingEnsemble
from ._oof import response_method

__all__ = ["StackingEnsemble", "StackingEnsembleRegressor", "LeakageWarning"]

_STACK_METHODS = ("auto", "predict_proba", "decision_function", "predict")


class LeakageWarning(UserWarning):
    """The meta-model scores better out-of-fold than on held-out rows: its inputs likely leak labels."""


def _final_has(attr):
    return lambda self: hasattr(self.final_estimator_ if hasattr(self, "final_estimator_")
                                else self._final(), attr)


class _StackingBase(TransformingEnsemble):
    def _final(self, y=None):
        """The meta-model: the user's, or a regularisation-tuned linear model.

        Classifiers get ``LogisticRegressionCV`` choosing C among 10 values by out-of-fold log loss
        (stratified folds, at most 5, never more than the smallest class has rows); scikit-learn's
        stacking fixes C=1, which over- or under-fits the meta-features depending on the members.
        With a class of a single row, plain ``LogisticRegression`` is used.
        """
        if self.final_estimator is not None:
            return self.final_estimator
        if not self._classifier:
            return RidgeCV()
        if y is not None:
            k = min(5, int(np.unique(y, return_counts=True)[1].min()))
            if k >= 2:
                return LogisticRegressionCV(Cs=10, cv=StratifiedKFold(k), scoring="neg_log_loss", max_iter=2000)
        return LogisticRegression(max_iter=1000)

    def _methods(self, members) -> dict[str, str]:
        if self.stack_method not in _STACK_METHODS:
            raise ConfigError(f"stack_method={self.stack_method!r} is not allowed; use one of {', '.join(_STACK_METHODS)}.")
        if not self._classifier:
            return {n: "predict" for n, _ in members}
        out = {}
        for name, est in members:
            method = response_method(est, self.stack_method)
            if not hasattr(est, method):
                raise ConfigError(f"stack_method={self.stack_method!r} but member {name!r} ({type(est).__name__}) "
                                  f"has no {method}; use stack_method='auto'.")
            out[name] = method
        return out

    def _meta_column(self, out: np.ndarray, method: str) -> np.ndarray:
        if not self._classifier:
            return np.asarray(out, dtype=float).reshape(len(out), -1)
        if method == "predict":  # labels -> one-hot, so string labels and multiclass work
            return (np.asarray(out)[:, None] == self.classes_[None, :]).astype(float)
        out = np.asarray(out, dtype=float)
        if out.ndim == 1:
            return out[:, None]
        if method == "predict_proba" and len(self.classes_) == 2:
            return out[:, 1:]  # the two columns are collinear; keep one
        return out

    def _holdout_split(self, X, y, groups):
        h = self.holdout
        if h is None:
            return None
        if not (isinstance(h, numbers.Real) and 0.0 < h < 1.0):
            raise ConfigError(f"holdout={h!r} is not allowed; use None or a fraction in (0, 1), e.g. 0.2.")
        if not (isinstance(self.cv, numbers.Integral) or hasattr(self.cv, "split")):
            raise ConfigError("holdout needs cv as an int or a splitter object: fixed (train, test) index lists "
                              "refer to all rows, but the held-out rows are removed first. Pass e.g. KFold(5).")
        n = len(y)
        if isinstance(self.cv, TimeSeriesSplit):
            cut = int(round(n * (1 - h)))
            return np.arange(cut), np.arange(cut, n)
        if groups is not None:
            splitter = GroupShuffleSplit(1, test_size=h, random_state=self.random_state)
        elif self._classifier:
            splitter = StratifiedShuffleSplit(1, test_size=h, random_state=self.random_state)
        else:
            splitter = ShuffleSplit(1, test_size=h, random_state=self.random_state)
        return next(splitter.split(X, y, groups))

    def fit(self, X, y, groups=None):
        """Fit members per fold, the meta-model on their out-of-fold outputs; returns self.

        ``groups`` reaches group-aware splitters (and, with ``cv`` an int, selects
        ``StratifiedGroupKFold``); with ``holdout`` it also keeps whole groups out.
        """
        members = self._members()
        X, y = self._check_X_y(X, y, members)
        methods = self._methods(members)
        split = self._holdout_split(X, y, groups)
        if split is not None:
            train, hold = split
            Xh, yh = X[hold], y[hold]
            X, y = X[train], y[train]
            groups = None if groups is None else np.asarray(groups)[train]
            if self._classifier:
                classes = np.unique(y)
                if len(classes) != len(self.classes_):
                    raise ConfigError(f"holdout={self.holdout} leaves classes {np.setdiff1d(self.classes_, classes).tolist()} "
                                      "with no training rows; use a smaller holdout or more data.")
        cache = self._cache()
        before = cache.n_fits
        folds = self._folds(X, y, groups)
        key = cache.data_key(X, y, folds, groups)
        refit_all = self._refit_mode(members)
        oof, covered, fits = cache.oof(members, X, y, folds, data_key=key, methods=methods,
                                       classes=self.classes_ if self._classifier else None, n_jobs=self.n_jobs,
                                       with_full=refit_all)
        if refit_all:
            fits = cache.full_fits(members, X, y, data_key=key, n_jobs=self.n_jobs)
            self.refit_members_ = [n for n, _ in members]
        else:
            names = self._auto_refit(members, fits, len(y), folds) if self.refit == "auto" else list(self.refit or [])
            chosen = [(n, e) for n, e in members if n in names]
            if chosen:
                fits = {**fits, **cache.full_fits(chosen, X, y, data_key=key, n_jobs=self.n_jobs)}
            self.refit_members_ = [n for n, _ in chosen]
        self._check_frozen_classes(fits)
        self._members_ = members
        self._methods_ = methods
        self.estimators_ = [fits[n] for n, _ in members]
        Z = self._meta_features({n: oof[n] for n, _ in members}, X)[covered]
        self.n_oof_rows_ = int(covered.sum())
        self.final_estimator_ = clone(self._final(y[covered])).fit(Z, y[covered])
        self._record_fits(cache, before)
        self.leakage_ = None
        if split is not None:
            self._leakage_check(Z, y[covered], Xh, yh)
        return self

    def _refit_mode(self, members) -> bool:
        """Validate ``refit``; True when every member is refitted on all rows."""
        r = self.refit
        if isinstance(r, bool | np.bool_):
            return bool(r)
        if r is None:
            return False
        if isinstance(r, str):
            if r != "auto":
                raise ConfigError(f"refit={r!r} is not allowed; use True, False, 'auto' or a list of member names.")
        else:
            unknown = [n for n in r if n not in {m for m, _ in members}]
            if unknown or isinstance(r, dict):
                raise ConfigError(f"refit names {unknown or r!r} are not members; the members are "
                                  f"{[m for m, _ in members]}. Use True, False, 'auto' or a list of member names.")
        if not (isinstance(self.refit_budget, numbers.Real) and 0.0 <= float(self.refit_budget) <= 1.0):
            raise ConfigError(f"refit_budget={self.refit_budget!r} must be a fraction in [0, 1] of the fold fits' "
                              "time, e.g. 0.1")
        return False

    def _auto_refit(self, members, fits, n_rows: int, folds) -> list[str]:
        """Members to refit on all rows: the cheapest first, while their refits fit in ``refit_budget``.

        A member's refit is estimated from its measured fold fits, scaled by the square of the
        row ratio (kernel methods grow about quadratically; most others less), and the budget is
        a share of the total fold-fit time. Data-hungry members that are cheap to fit (linear
        models, kNN, SVMs on a few thousand rows) get their full-data fit almost for free.
        """
        times = {n: fits[n].fit_seconds for n, _ in members
                 if not fits[n].frozen and fits[n].fit_seconds is not None}
        total = sum(times.values()) * len(folds)
        train_rows = float(np.mean([len(tr) for tr, _ in folds]))
        scale = (n_rows / max(train_rows, 1.0)) ** 2
        chosen, spent = [], 0.0
        for name in sorted(times, key=times.get):
            cost = times[name] * scale
            if spent + cost > float(self.refit_budget) * total:
                break
            chosen.append(name)
            spent += cost
        return chosen

    def _meta_features(self, outputs: dict, X) -> np.ndarray:
        cols = [self._meta_column(outputs[n], self._methods_[n]) for n, _ in self._members_]
        if self.passthrough:
            cols.append(np.asarray(X, dtype=float))
        return np.hstack(cols)

    def _transform(self, X) -> np.ndarray:
        classes = self.classes_ if self._classifier else None
        outs = {n: fit.output(X, self._methods_[n], classes) for (n, _), fit in zip(self._members_, self.estimators_)}
        return self._meta_features(outs, X)

    def transform(self, X):
        """The meta-features: each member's fold-averaged output (plus X with passthrough)."""
        check_is_fitted(self)
        return self._transform(self._check_X(X))

    def _leakage_check(self, Z, y, Xh, yh) -> None:
        """Compare the meta-model's out-of-fold score on the meta-features with its held-out score."""
        k = min(5, int(np.unique(y, return_counts=True)[1].min())) if self._classifier else 5
        inner = (StratifiedKFold(max(k, 2), shuffle=True, random_state=self.random_state) if self._classifier
                 else KFold(5, shuffle=True, random_state=self.random_state))
        pred = cross_val_predict(clone(self._final(y)), Z, y, cv=inner)
        if self._classifier:
            oof_score = float(np.mean(pred == y))
        else:
            oof_score = float(1 - np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
        hold_score = float(self.score(Xh, yh))
        gap = oof_score - hold_score
        leaked = gap > self.leakage_margin
        self.leakage_ = {"metric": "accuracy" if self._classifier else "r2", "oof_score": oof_score,
                         "holdout_score": hold_score, "gap": gap, "margin": float(self.leakage_margin),
                         "holdout_rows": int(len(yh)), "warned": bool(leaked)}
        if leaked:
            warnings.warn(LeakageWarning(
                f"the meta-model scores {oof_score:.3f} out-of-fold but {hold_score:.3f} on {len(yh)} held-out rows "
                f"(gap {gap:.3f} > leakage_margin={self.leakage_margin}); the out-of-fold predictions likely leak. "
                "Check that frozen members were not trained on this data and that cv respects groups or time "
                "order (GroupKFold, TimeSeriesSplit)."), stacklevel=3)

    def predict(self, X):
        """The meta-model's prediction on the members' fold-averaged outputs."""
        check_is_fitted(self)
        return self.final_estimator_.predict(self._transform(self._check_X(X)))


class StackingEnsemble(ClassifierMixin, _StackingBase):
    """Stacking: a meta-model trained on the members' out-of-fold predictions.

    Unlike scikit-learn's ``StackingClassifier``, the members are not refitted on all rows after
    cross-validation: the ``cv`` fold models are kept and their outputs averaged at prediction,
    so K members cost K x cv fits instead of K x (cv + 1). ``refit=True`` restores the extra fit.

    Parameters
    ----------
    estimators : list of (str, estimator)
        scikit-learn classifiers, ``nn.Module`` / ONNX models (prefit adapters) or :class:`Frozen`.
    final_estimator : estimator or None
        The meta-model; default ``LogisticRegressionCV`` choosing C by out-of-fold log loss
        (scikit-learn's stacking uses ``LogisticRegression()`` with C fixed at 1). Another
        ``StackingEnsemble`` here gives multi-layer stacking.
    cv : int, splitter or iterable of splits
        int: shuffled ``StratifiedKFold`` (``StratifiedGroupKFold`` when ``fit`` gets ``groups``),
        seeded by ``random_state``. Splitters such as ``GroupKFold`` or ``TimeSeriesSplit`` are used
        as given; rows no fold predicts (the first ``TimeSeriesSplit`` block) do not train the meta-model.
    stack_method : {"auto", "predict_proba", "decision_function", "predict"}
        Member output fed to the meta-model; "auto" takes the first available in that order.
        Binary probabilities contribute one column; labels are one-hot encoded.
    passthrough : bool
        Also give the meta-model the raw features.
    refit : bool, "auto" or list of str
        ``True``: fit each member on all rows too and predict with those instead of the fold
        average (K x (cv + 1) fits). A list refits the named members only. ``"auto"`` refits the
        members whose measured fold fits say a full fit is cheap (cheapest first, within
        ``refit_budget`` of the fold fits' total time), so data-hungry members that are cheap to fit
        (linear models, kNN, small SVMs) predict from all rows. Which members qualify depends on measured times;
        ``refit_members_`` lists them (pass that list to pin the choice).
    refit_budget : float in [0, 1], default=0.1
        With ``refit="auto"``, the estimated refit time allowed, as a share of the fold fits' time.
    holdout : float or None
        Leakage guard: keep this fraction of rows (whole groups with ``groups``, the latest rows
        with ``TimeSeriesSplit``) out of all fitting, then warn with :class:`LeakageWarning` when the
        meta-model's out-of-fold accuracy beats its accuracy on those rows by more than
        ``leakage_margin``. The held-out rows are not used for training.
    leakage_margin : float
        Allowed gap, in accuracy (R² for regression), before the guard warns.
    n_jobs, random_state, cache
        As in :class:`VotingEnsemble`.

    Attributes
    ----------
    classes_, estimators_ (fold models, or the full fit, per member), refit_members_,
    final_estimator_, n_fits_, n_oof_rows_,
    leakage_ (dict with both scores and the gap, or None without ``holdout``).

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> import slimstack as ss
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> stack = ss.StackingEnsemble([("nb", GaussianNB()), ("dt", DecisionTreeClassifier(max_depth=4, random_state=0))],
    ...                             cv=5, random_state=0).fit(X, y)
    >>> stack.n_fits_  # 2 members x 5 folds; scikit-learn's StackingClassifier would run 12
    10
    """

    def __init__(self, estimators, final_estimator=None, *, cv=5, stack_method="auto", passthrough=False,
                 refit=False, refit_budget=0.1, holdout=None, leakage_margin=0.05, n_jobs=None, random_state=None,
                 cache=None):
        self.estimators = estimators
        self.final_estimator = final_estimator
        self.cv = cv
        self.stack_method = stack_method
        self.passthrough = passthrough
        self.refit = refit
        self.refit_budget = refit_budget
        self.holdout = holdout
        self.leakage_margin = leakage_margin
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache

    @available_if(_final_has("predict_proba"))
    def predict_proba(self, X):
        """The meta-model's class probabilities."""
        check_is_fitted(self)
        return self.final_estimator_.predict_proba(self._transform(self._check_X(X)))

    @available_if(_final_has("decision_function"))
    def decision_function(self, X):
        """The meta-model's decision function."""
        check_is_fitted(self)
        return self.final_estimator_.decision_function(self._transform(self._check_X(X)))


class StackingEnsembleRegressor(RegressorMixin, _StackingBase):
    """Stacking for regressors: a meta-model (default ``RidgeCV``) on out-of-fold predictions.

    Parameters and behaviour as in :class:`StackingEnsemble` (fold models kept and averaged,
    ``refit``, ``passthrough``, splitters, ``holdout`` guard scored in R²); ``cv`` as an int gives
    shuffled ``KFold`` (``GroupKFold`` with ``groups``).

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> import slimstack as ss
    >>> X, y = load_diabetes(return_X_y=True)
    >>> ss.StackingEnsembleRegressor([("ridge", Ridge()), ("tree", DecisionTreeRegressor(max_depth=3, random_state=0))],
    ...                              cv=3, random_state=0).fit(X, y).predict(X[:2]).shape
    (2,)
    """

    _classifier = False

    def __init__(self, estimators, final_estimator=None, *, cv=5, passthrough=False, refit=False, refit_budget=0.1,
                 holdout=None, leakage_margin=0.05, n_jobs=None, random_state=None, cache=None):
        self.estimators = estimators
        self.final_estimator = final_estimator
        self.cv = cv
        self.passthrough = passthrough
        self.refit = refit
        self.refit_budget = refit_budget
        self.holdout = holdout
        self.leakage_margin = leakage_margin
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache

    stack_method = "predict"
