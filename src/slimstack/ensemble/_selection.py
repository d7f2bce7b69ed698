"""Caruana et al. (2004) ensemble selection from a library of models, on out-of-fold predictions."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError, ModelError
from ._base import EnsembleBase, choice_error
from ._weights import POOLINGS, caruana_selection, pool, proba_scorer

__all__ = ["EnsembleSelection"]


class EnsembleSelection(ClassifierMixin, EnsembleBase):
    """Greedy forward selection with replacement over a model library (Caruana et al., 2004).

    Every member is fitted on each fold; the selection then runs on their out-of-fold
    probabilities: start from the best ``n_init`` members (sorted initialisation), add one member
    at a time, with replacement, choosing the one that most improves ``scoring``, and keep the
    ensemble from the best step (the best-iteration cut). A member picked ``c`` times gets weight
    ``c / total``; unpicked members are dropped, so a weak member never drags the mean down.

    Parameters
    ----------
    estimators : list of (str, estimator)
        The library; classifiers with ``predict_proba`` (scikit-learn, PyTorch, ONNX, frozen).
    scoring : str or callable
        Any scikit-learn scorer name or ``scorer(estimator, X, y)``; default "neg_log_loss".
    ensemble_size : int
        Selection steps (picks), including the initial ones.
    n_init : int or "auto"
        How many of the best single members start the ensemble. "auto" tries 1..K on the
        out-of-fold data and keeps the best start, as the paper picks N on its hill-climbing set.
    pooling : {"arithmetic", "geometric"}
        How the selected members' probabilities are pooled.
    cv, refit, n_jobs, random_state, cache
        As in :class:`VotingEnsemble`; ``refit=True`` refits only the selected members on all rows.

    Attributes
    ----------
    weights_ (per member, zero for unpicked), counts_, scores_ (score after each step),
    best_iteration_, oof_score_, estimators_, n_fits_.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> import slimstack as ss
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> lr = make_pipeline(StandardScaler(), LogisticRegression())
    >>> sel = ss.EnsembleSelection([("lr", lr), ("nb", GaussianNB()),
    ...                             ("dt", DecisionTreeClassifier(random_state=0))], cv=3, random_state=0).fit(X, y)
    >>> float(sel.weights_.sum())
    1.0
    """

    def __init__(self, estimators, *, scoring="neg_log_loss", ensemble_size=25, n_init="auto",
                 pooling="arithmetic", cv=5, refit=False, n_jobs=None, random_state=None, cache=None):
        self.estimators = estimators
        self.scoring = scoring
        self.ensemble_size = ensemble_size
        self.n_init = n_init
        self.pooling = pooling
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.cache = cache

    def fit(self, X, y, groups=None):
        """Fit the library on each fold, select on out-of-fold probabilities; returns self."""
        if not isinstance(self.ensemble_size, numbers.Integral) or self.ensemble_size < 1:
            raise ConfigError(f"ensemble_size={self.ensemble_size!r} is not allowed; use an int >= 1 (e.g. 25).")
        if not (self.n_init == "auto" or (isinstance(self.n_init, numbers.Integral) and self.n_init >= 1)):
            raise ConfigError(f"n_init={self.n_init!r} is not allowed; use 'auto' or an int >= 1.")
        if self.pooling not in POOLINGS:
            raise choice_error("pooling", self.pooling, POOLINGS)
        members = self._members()
        X, y = self._check_X_y(X, y, members)
        for name, est in members:
            if not hasattr(est, "predict_proba"):
                raise ModelError(f"member {name!r} ({type(est).__name__}) has no predict_proba, which selection "
                                 "pools; use SVC(probability=True) or CalibratedClassifierCV around it.")
        cache = self._cache()
        before = cache.n_fits
        folds = self._folds(X, y, groups)
        key = cache.data_key(X, y, folds, groups)
        oof, covered, fits = cache.oof(members, X, y, folds, data_key=key,
                                       methods={n: "predict_proba" for n, _ in members},
                                       classes=self.classes_, n_jobs=self.n_jobs)
        self._check_frozen_classes(fits)
        P = np.stack([oof[n][covered] for n, _ in members])
        yc = y[covered]
        K = len(members)
        starts = range(1, K + 1) if self.n_init == "auto" else [min(int(self.n_init), K)]
        best = None
        for n_init in starts:
            size = max(int(self.ensemble_size), n_init)
            counts, history, step = caruana_selection(P, yc, self.classes_, scoring=self.scoring,
                                                      ensemble_size=size, n_init=n_init, pooling=self.pooling)
            if best is None or history[step] > best[1][best[2]]:
                best = (counts, history, step, n_init)
        counts, history, step, n_init = best
        self.counts_ = counts
        self.weights_ = counts / counts.sum()
        self.scores_ = np.asarray(history)
        self.best_iteration_ = step
        self.n_init_ = n_init
        self.oof_score_ = proba_scorer(self.scoring, self.classes_)[0](yc, pool(P, self.weights_, self.pooling))
        if self.refit:
            chosen = [(n, e) for (n, e), c in zip(members, counts) if c > 0]
            full = cache.full_fits(chosen, X, y, data_key=key, n_jobs=self.n_jobs)
            fits = {**fits, **full}
        self.estimators_ = [fits[n] for n, _ in members]
        self._record_fits(cache, before)
        return self

    def predict_proba(self, X):
        """Pooled probabilities of the selected members (weight-zero members are not run)."""
        check_is_fitted(self)
        X = self._check_X(X)
        keep = np.flatnonzero(self.weights_ > 0)
        P = np.stack([self.estimators_[k].output(X, "predict_proba", self.classes_) for k in keep])
        return pool(P, self.weights_[keep], self.pooling)

    def predict(self, X):
        """The class with the largest pooled probability."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
