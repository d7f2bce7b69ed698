"""Hard, soft and weighted voting, with weights given or learned on out-of-fold predictions."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError, ModelError
from ._base import TransformingEnsemble, choice_error
from ._weights import POOLINGS, apply_temperature, fit_temperature, learn_weights, pool, proba_scorer

__all__ = ["VotingEnsemble", "VotingEnsembleRegressor"]


class _VotingBase(TransformingEnsemble):
    def _check_weights(self, K: int):
        w = self.weights
        if w is None or (isinstance(w, str) and w == "learn"):
            return w
        if isinstance(w, str):
            raise ConfigError(f"weights={w!r} is not allowed; use None, 'learn' or one non-negative number per member.")
        w = np.asarray(w, dtype=float)
        if w.ndim != 1 or len(w) != K:
            raise ConfigError(f"weights has {w.size} values but there are {K} members; give one weight per member "
                              "or weights='learn'.")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ConfigError(f"weights={w.tolist()} has negative or non-finite values; weights must be >= 0.")
        if w.sum() == 0:
            raise ConfigError(f"weights={w.tolist()} are all zero; give at least one member a positive weight.")
        return w / w.sum()

    def _fit_members(self, X, y, groups, methods, classes, need_oof):
        """Fit members (fold copies when out-of-fold outputs are needed) and return those outputs."""
        members = self._members_
        cache = self._cache()
        before = cache.n_fits
        if need_oof:
            folds = self._folds(X, y, groups)
            key = cache.data_key(X, y, folds, groups)
            oof, covered, fits = cache.oof(members, X, y, folds, data_key=key, methods=methods, classes=classes,
                                           n_jobs=self.n_jobs, with_full=bool(self.refit))
            if self.refit:
                fits = cache.full_fits(members, X, y, data_key=key, n_jobs=self.n_jobs)
        else:
            key = cache.data_key(X, y, [], groups)
            oof, covered = None, None
            fits = cache.full_fits(members, X, y, data_key=key, n_jobs=self.n_jobs)
        self._check_frozen_classes(fits)
        self.estimators_ = [fits[name] for name, _ in members]
        self._record_fits(cache, before)
        return oof, covered


class VotingEnsemble(ClassifierMixin, _VotingBase):
    """Hard, soft or weighted voting over classifiers, with weights given or learned out-of-fold.

    Parameters
    ----------
    estimators : list of (str, estimator)
        scikit-learn classifiers, ``nn.Module`` (used as a prefit :class:`TorchClassifier`), ONNX
        models, or :class:`Frozen` fitted models.
    voting : {"soft", "hard"}
        "soft" pools predicted probabilities; "hard" counts (weighted) predicted labels.
    weights : None, array-like or "learn"
        None: equal weights. Numbers: normalised to sum to one. "learn": non-negative weights summing
        to one that maximise ``scoring`` on out-of-fold predictions.
    pooling : {"arithmetic", "geometric"}
        How soft voting pools probabilities. "geometric" (normalised weighted geometric mean) is the
        log-odds mean for two classes.
    temperature : bool
        Fit one temperature per member on out-of-fold probabilities (soft voting) before pooling.
    scoring : str, callable or None
        What learned weights optimise; default log loss (soft) or accuracy (hard).
    cv : int, splitter or iterable of splits
        Folds for out-of-fold predictions (only used with ``weights="learn"`` or ``temperature``).
    refit : bool
        With out-of-fold fitting: False (default) averages the fold models at prediction (members x
        cv fits); True also fits each member on all rows and predicts with those (members x (cv + 1)).
        Without out-of-fold fitting each member is fitted once on all rows.
    n_jobs : int or None
        joblib workers over (member, fold) fits; any joblib backend, Dask included.
    random_state : int or None
        Seeds the fold shuffling.
    cache : OOFCache or None
        Share fold models and out-of-fold predictions with other ensembles.

    Attributes
    ----------
    classes_, estimators_ (fitted copies per member), weights_, temperatures_, oof_score_ (learned
    weights only), n_fits_ (fits this call ran).

    Examples
    --------
    >>> from sklearn.datasets import load_wine
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> import slimstack as ss
    >>> X, y = load_wine(return_X_y=True)
    >>> lr = make_pipeline(StandardScaler(), LogisticRegression())
    >>> vote = ss.VotingEnsemble([("lr", lr), ("nb", GaussianNB())],
    ...                          weights="learn", cv=3, random_state=0).fit(X, y)
    >>> round(float(vote.weights_.sum()), 6), vote.n_fits_
    (1.0, 6)
    """

    def __init__(self, estimators, *, voting="soft", weights=None, pooling="arithmetic", temperature=False,
                 scoring=None, cv=5, refit=False, n_jobs=None, random_state=None, cache=None):
        self.estimators = estimators
        self.voting = voting
        self.weights = weights
        self.pooling = pooling
        self.temperature = temperature
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache

    def fit(self, X, y, groups=None):
        """Fit the members (and, for learned weights or temperatures, their fold copies); returns self."""
        if self.voting not in ("soft", "hard"):
            raise choice_error("voting", self.voting, ("soft", "hard"))
        if self.pooling not in POOLINGS:
            raise choice_error("pooling", self.pooling, POOLINGS)
        members = self._members()
        X, y = self._check_X_y(X, y, members)
        K = len(members)
        weights = self._check_weights(K)
        if self.voting == "soft":
            for name, est in members:
                if not hasattr(est, "predict_proba"):
                    raise ModelError(
                        f"member {name!r} ({type(est).__name__}) has no predict_proba, which soft voting needs; "
                        "use voting='hard', SVC(probability=True), or wrap it in CalibratedClassifierCV.")
        if self.temperature and self.voting == "hard":
            raise ConfigError("temperature=True needs voting='soft'; hard votes have no probabilities to scale.")
        self._members_ = members
        method = "predict_proba" if self.voting == "soft" else "predict"
        need_oof = (isinstance(weights, str)) or bool(self.temperature)
        oof, covered = self._fit_members(X, y, groups, {n: method for n, _ in members}, self.classes_, need_oof)
        self.temperatures_ = np.ones(K)
        if need_oof:
            P = self._stack([oof[n][covered] for n, _ in members])
            yc = y[covered]
            if self.temperature:
                self.temperatures_ = np.array([fit_temperature(P[k], yc, self.classes_) for k in range(K)])
                P = np.stack([apply_temperature(P[k], t) for k, t in enumerate(self.temperatures_)])
            if isinstance(weights, str):
                scoring = self.scoring or ("neg_log_loss" if self.voting == "soft" else "accuracy")
                pooling = self.pooling if self.voting == "soft" else "arithmetic"
                weights = learn_weights(P, yc, self.classes_, pooling=pooling, scoring=scoring)
                self.oof_score_ = proba_scorer(scoring, self.classes_)[0](yc, pool(P, weights, pooling))
        self.weights_ = np.full(K, 1.0 / K) if weights is None else np.asarray(weights, dtype=float)
        return self

    def _stack(self, outs) -> np.ndarray:
        if self.voting == "hard":
            return np.stack([(np.asarray(o)[:, None] == self.classes_[None, :]).astype(float) for o in outs])
        return np.stack(outs)

    def _member_outputs(self, X) -> np.ndarray:
        method = "predict_proba" if self.voting == "soft" else "predict"
        outs = [fit.output(X, method, self.classes_) for fit in self.estimators_]
        P = self._stack(outs)
        if self.voting == "soft":
            P = np.stack([apply_temperature(P[k], t) for k, t in enumerate(self.temperatures_)])
        return P

    def predict(self, X):
        """The class with the largest pooled probability (soft) or weighted vote share (hard)."""
        check_is_fitted(self)
        X = self._check_X(X)
        P = self._member_outputs(X)
        pooling = self.pooling if self.voting == "soft" else "arithmetic"
        return self.classes_[np.argmax(pool(P, self.weights_, pooling), axis=1)]

    @available_if(lambda self: self.voting == "soft")
    def predict_proba(self, X):
        """Pooled class probabilities (soft voting only)."""
        check_is_fitted(self)
        X = self._check_X(X)
        return pool(self._member_outputs(X), self.weights_, self.pooling)

    def transform(self, X):
        """Each member's probabilities (soft) or labels (hard), side by side."""
        check_is_fitted(self)
        X = self._check_X(X)
        method = "predict_proba" if self.voting == "soft" else "predict"
        outs = [fit.output(X, method, self.classes_) for fit in self.estimators_]
        return np.hstack(outs) if self.voting == "soft" else np.column_stack(outs)


class VotingEnsembleRegressor(RegressorMixin, _VotingBase):
    """Weighted averaging of regressors, with weights given or learned out-of-fold (the regressor
    counterpart of :class:`VotingEnsemble`).

    ``weights="learn"`` minimises out-of-fold mean squared error (or ``scoring``) over non-negative
    weights summing to one; other parameters as in :class:`VotingEnsemble`.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> import slimstack as ss
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = ss.VotingEnsembleRegressor([("ridge", Ridge()), ("tree", DecisionTreeRegressor(max_depth=3, random_state=0))],
    ...                                  weights="learn", cv=3, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    _classifier = False

    def __init__(self, estimators, *, weights=None, scoring=None, cv=5, refit=False, n_jobs=None,
                 random_state=None, cache=None):
        self.estimators = estimators
        self.weights = weights
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache

    def fit(self, X, y, groups=None):
        """Fit the members (fold copies too for learned weights); returns self."""
        members = self._members()
        X, y = self._check_X_y(X, y, members)
        weights = self._check_weights(len(members))
        self._members_ = members
        need_oof = isinstance(weights, str)
        oof, covered = self._fit_members(X, y, groups, {n: "predict" for n, _ in members}, None, need_oof)
        if need_oof:
            P = np.stack([oof[n][covered] for n, _ in members]).astype(float)
            weights = learn_weights(P, y[covered].astype(float), None, scoring=self.scoring)
        K = len(members)
        self.weights_ = np.full(K, 1.0 / K) if weights is None else np.asarray(weights, dtype=float)
        return self

    def predict(self, X):
        """The weighted mean of the members' predictions."""
        check_is_fitted(self)
        X = self._check_X(X)
        P = np.stack([np.asarray(fit.output(X, "predict", None), dtype=float).reshape(len(X)) for fit in self.estimators_])
        return self.weights_ @ P

    def transform(self, X):
        """Each member's prediction as a column."""
        check_is_fitted(self)
        X = self._check_X(X)
        return np.column_stack([fit.output(X, "predict", None) for fit in self.estimators_])

