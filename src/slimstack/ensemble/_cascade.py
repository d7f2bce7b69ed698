"""A confidence cascade: cheap stages answer the easy inputs, expensive stages only the hard ones.

Most inputs of a classification task are easy; a small model is as right about them as a large
ensemble. A cascade runs its stages from cheap to expensive and lets a stage answer when its
confidence passes its threshold, so the expensive stage only sees the inputs the cheap ones defer.
The thresholds are tuned on held-out data against a stated goal (an accuracy floor relative to the
last stage, or a cost budget), with each stage's cost measured as its latency per sample.
"""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.utils import _safe_indexing
from sklearn.utils._tags import get_tags
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_samples, check_is_fitted, column_or_1d

from .._utils import threads
from ..errors import ConfigError, DataError, ModelError
from ._cascade_thresholds import (cross_fit_with_cache, drop_upper_bound, evaluate_grid, fold_count,
                                  out_of_fold_probas, stratified_split)
from ._cascade_thresholds import evaluate_grid as _evaluate_grid  # noqa: F401  (kept for older imports)
from ._cascade_thresholds import pareto as _pareto
from ._oof import OOFCache
from ._stage_checks import check_estimator_list, check_same_classes, is_fitted, row_indexable

__all__ = ["Cascade", "confidence_scores", "CONFIDENCE_MEASURES"]

CONFIDENCE_MEASURES = ("max_prob", "margin", "entropy")


def confidence_scores(proba: np.ndarray, measure: str = "max_prob") -> np.ndarray:
    """Confidence of each row of a probability matrix, in [0, 1] for every measure.

    ``max_prob`` is the top probability; ``margin`` the gap between the top two; ``entropy`` is
    ``1 - H(p) / log(K)``, so 1 means certain and 0 means uniform. Keeping all three on [0, 1] lets
    one threshold range serve every measure.

    Examples
    --------
    >>> confidence_scores(np.array([[0.7, 0.2, 0.1]]), "margin")
    array([0.5])
    """
    proba = np.asarray(proba, dtype=np.float64)
    if measure == "max_prob":
        return proba.max(axis=1)
    if measure == "margin":
        if proba.shape[1] < 2:
            return np.ones(len(proba))
        top2 = np.partition(proba, -2, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if measure == "entropy":
        k = proba.shape[1]
        if k < 2:
            return np.ones(len(proba))
        p = np.clip(proba, 1e-12, 1.0)
        h = -(proba * np.log(p)).sum(axis=1)
        return np.clip(1.0 - h / np.log(k), 0.0, 1.0)
    raise ConfigError(f"confidence={measure!r} is not a confidence measure; use one of {CONFIDENCE_MEASURES}")


class Cascade(ClassifierMixin, _BaseComposition):
    """Run classifiers from cheap to expensive; each answers only when it is confident enough.

    Stage ``s`` answers an input when its confidence is strictly greater than ``thresholds_[s]``;
    otherwise the input goes on to the next stage, and the last stage answers whatever is left.
    A threshold of 1.0 therefore means the stage never answers, 0.0 that it answers everything
    short of a perfect tie.

    Thresholds are tuned on predictions the stages did not train on. With ``prefit=False`` and
    ``cv=5`` (the default), each stage is cross-fitted: the out-of-fold probabilities of 5 clones,
    each fitted on four fifths of ``fit``'s data, cover every training row, the thresholds are tuned
    on all of them, and the stages are then fitted on all the data. With ``cv=None`` a stratified
    ``validation_fraction`` share is held out instead (cheaper when the last stage is an expensive
    ensemble that k-fold refitting would multiply). With ``prefit=True`` the stages are used as
    given and all of ``fit``'s data is the validation data.

    The accuracy promise holds with a stated confidence: the cheapest thresholds are chosen whose
    one-sided upper bound on the accuracy drop against the last stage, at confidence ``1 - risk``
    (exact binomial bounds on the rows where the two disagree, see :func:`drop_upper_bound`), is
    within ``max_accuracy_drop``. ``expected_drop_`` and ``drop_bound_`` report both figures.

    Parameters
    ----------
    stages : list of (str, estimator)
        Classifiers with ``predict_proba`` and ``classes_``, ordered from cheap to expensive. Any
        classifier works: scikit-learn models, ``ss.TorchClassifier`` around a (compressed) module,
        or an ensemble.
    confidence : {"max_prob", "margin", "entropy"}, default="max_prob"
        How a stage's confidence is read from its probabilities (see :func:`confidence_scores`).
    thresholds : sequence of float in [0, 1], default=None
        One threshold per stage but the last. ``None`` tunes them to the goal below.
    max_accuracy_drop : float in [0, 1], default=0.002
        The goal when ``cost_budget`` is None: the cheapest thresholds whose accuracy on new data is
        at most this far (absolute, 0.002 = 0.2 points) below the last stage's own accuracy, with
        confidence ``1 - risk``.
    risk : float in (0, 0.5], default=0.05
        The accepted chance that the promise fails: the upper bound on the drop is taken at
        confidence ``1 - risk``. ``None`` uses the older rule below (``safety``).
    safety : float >= 0, default=1.0
        Only with ``risk=None``: the validation drop *plus* ``safety`` paired standard errors must
        be within ``max_accuracy_drop`` (a normal approximation, too tight when few rows disagree).
    cv : int >= 2 or None, default=5
        Folds of the cross-fitting that tunes the thresholds (``prefit=False`` only); a class
        with fewer rows than ``cv`` lowers it to that count (said in ``record_``). ``None`` holds
        out ``validation_fraction`` instead.
    cost_budget : float, default=None
        Alternative goal: the most accurate thresholds whose mean cost per sample (in the unit of
        ``costs_``, milliseconds unless ``costs`` is given) is within this budget.
    costs : sequence of float, default=None
        Cost of running each stage on one sample. ``None`` measures it in ``fit``: the median
        latency of ``predict_proba`` on ``cost_batch_size`` validation rows, with ``n_threads``
        threads, stages timed interleaved, in milliseconds per sample; a second timing on 1/16 of
        the rows separates each stage's fixed per-call overhead (``call_overhead_``), which a stage
        pays once per batch however few rows reach it. Given ``costs`` have no overhead.
    prefit : bool, default=False
        Use the stages as fitted; ``fit`` then only measures costs and tunes thresholds. Wrap the
        stages in ``ss.Frozen`` to keep them fitted through ``sklearn.base.clone``.
    validation_fraction : float in (0, 1), default=0.25
        Share of the data held out for tuning when ``prefit=False`` and ``cv=None``.
    refit : bool, default=False
        With ``cv=None``: after tuning, refit every stage on all of ``fit``'s data. (Cross-fitting
        always ends with the stages fitted on all the data.)
    n_thresholds : int, default=50
        Candidate thresholds per stage (quantiles of its validation confidence, plus 0 and 1).
        With more than two stages the product grid is capped at 4096 points.
    cost_batch_size, cost_repeats, n_threads : int
        How costs are measured (see ``costs``).
    random_state : int, default=0
        Seed of the folds (or of the validation split).
    cache : ss.OOFCache, default=None
        Cross-fitting only: share fold models, out-of-fold predictions and full fits with other
        cascades (or ensembles) given the same cache, so a stage common to several cascades on the
        same data and folds (e.g. one expensive last stage behind different first stages) is
        fitted once. The fitted stages are then shared between those cascades, not copied.

    Attributes
    ----------
    stages_ : list of (str, estimator)
        The fitted stages.
    classes_ : ndarray
    thresholds_ : ndarray of shape (n_stages - 1,)
    costs_ : ndarray of shape (n_stages,)
        Cost per sample of each stage (at ``cost_batch_`` rows per call).
    cost_batch_ : int
        Rows per call behind ``costs_``: ``cost_batch_size``, or fewer on a small validation set.
    call_overhead_ : ndarray of shape (n_stages,)
        Measured fixed cost of one call of each stage (zeros when ``costs`` is given). A stage that
        answers few rows still pays it once per batch; the curve's mean cost includes it.
    curve_ : dict of ndarrays
        Every evaluated threshold setting: ``thresholds`` (m, n_stages - 1), ``accuracy`` (m,),
        ``cost`` (m,) mean cost per sample, ``stage_share`` (m, n_stages), ``drop_se`` (m,) standard
        error of the accuracy difference against the last stage, and ``pareto`` (m,), True where no
        other setting is both cheaper and at least as accurate.
    stage_share_ : dict of str to float
        Share of the validation inputs each stage answered at ``thresholds_``.
    validation_accuracy_, mean_cost_ : float
        Validation accuracy and mean cost per sample at ``thresholds_``.
    reference_accuracy_, reference_cost_ : float
        Validation accuracy and cost per sample of the last stage alone.
    expected_drop_, drop_bound_ : float
        At ``thresholds_``: the accuracy drop against the last stage on the tuning predictions, and
        its one-sided upper bound at confidence ``confidence_``.
    confidence_ : float
        ``1 - risk`` (with ``risk=None``: the normal-approximation confidence of ``safety``).
    record_ : dict
        What the thresholds were tuned on (``tuned_on``, ``rows``, ``folds``), the goal, and the
        drop figures above, as plain JSON-able values.
    goal_met_ : bool
        False when no threshold setting met ``cost_budget`` (the cheapest one is used, with a warning).
        Given ``thresholds`` are used as they are (and added to ``curve_``).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_digits(return_X_y=True)
    >>> cascade = Cascade([("lr", LogisticRegression(max_iter=500)),
    ...                    ("rf", RandomForestClassifier(random_state=0))], max_accuracy_drop=0.01)
    >>> cascade.fit(X, y).predict(X[:3])
    array([0, 1, 2])
    """

    def __init__(
        self,
        stages: Sequence[tuple[str, Any]],
        *,
        confidence: str = "max_prob",
        thresholds: Sequence[float] | None = None,
        max_accuracy_drop: float = 0.002,
        risk: float | None = 0.05,
        safety: float = 1.0,
        cv: int | None = 5,
        cost_budget: float | None = None,
        costs: Sequence[float] | None = None,
        prefit: bool = False,
        validation_fraction: float = 0.25,
        refit: bool = False,
        n_thresholds: int = 50,
        cost_batch_size: int = 256,
        cost_repeats: int = 5,
        n_threads: int | None = 2,
        random_state: int | None = 0,
        cache: OOFCache | None = None,
    ):
        self.stages = stages
        self.confidence = confidence
        self.thresholds = thresholds
        self.max_accuracy_drop = max_accuracy_drop
        self.risk = risk
        self.safety = safety
        self.cv = cv
        self.cost_budget = cost_budget
        self.costs = costs
        self.prefit = prefit
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.n_thresholds = n_thresholds
        self.cost_batch_size = cost_batch_size
        self.cost_repeats = cost_repeats
        self.n_threads = n_threads
        self.random_state = random_state
        self.cache = cache

    # -- scikit-learn plumbing ---------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return self._get_params("stages", deep=deep)

    def set_params(self, **params: Any) -> Cascade:
        self._set_params("stages", **params)
        return self

    @property
    def n_features_in_(self) -> int:
        check_is_fitted(self, "stages_")
        return self.stages_[0][1].n_features_in_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        # Rows pass to the stages unchanged, so sparse input works exactly when every stage takes it.
        try:
            tags.input_tags.sparse = all(get_tags(est).input_tags.sparse for _, est in self.stages)
        except (TypeError, ValueError, AttributeError):
            tags.input_tags.sparse = False
        return tags

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> Cascade:
        """Fit (or take) the stages, measure their costs and tune the thresholds."""
        names = check_estimator_list(self.stages, "stages", "Cascade")
        self._validate_params()
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        X = row_indexable(X)
        n = _num_samples(X)
        if n != len(y):
            raise DataError(f"Cascade.fit got {n} rows in X but {len(y)} labels in y; pass one label per row")
        if len(np.unique(y)) < 2:
            raise DataError(f"Cascade needs at least 2 classes in y, got only one class: {np.unique(y).tolist()}")

        self.record_: dict[str, Any] = {}
        if self.prefit:
            for name, est in self.stages:
                if not is_fitted(est):
                    raise ModelError(f"stage {name!r} is not fitted but prefit=True; fit it first or pass prefit=False")
            fitted = list(self.stages)
            X_val, y_val = X, y
            self.record_.update(tuned_on="the prefit stages' predictions on fit's data", rows=int(n))
        elif self.cv is not None:
            folds = fold_count(y, int(self.cv))
            if self.cache is not None:
                fitted, self.classes_, probas = cross_fit_with_cache(list(self.stages), X, y, folds,
                                                                     self.random_state, self.cache)
            else:
                fitted = [(name, clone(est).fit(X, y)) for name, est in self.stages]
                self.classes_ = check_same_classes(fitted, "stage")
                probas = out_of_fold_probas(self.stages, X, y, self.classes_, folds, self.random_state)
            X_val, y_val = X, y
            self.record_.update(tuned_on=f"{folds}-fold out-of-fold predictions over every training row", rows=int(n),
                                folds=folds)
            if folds < int(self.cv):
                self.record_["folds_note"] = (f"cv={self.cv} lowered to {folds}: the rarest class has {folds} rows, "
                                              "and every training fold must hold every class")
        else:
            X_tr, X_val, y_tr, y_val = stratified_split(X, y, self.validation_fraction, self.random_state)
            fitted = [(name, clone(est).fit(X_tr, y_tr)) for name, est in self.stages]
            self.record_.update(tuned_on=f"a held-out {self.validation_fraction:g} share", rows=int(len(y_val)))
        self.classes_ = check_same_classes(fitted, "stage")
        unknown = np.setdiff1d(np.unique(y_val), self.classes_)
        if len(unknown):
            raise DataError(f"validation labels {unknown.tolist()} are not among the stages' classes "
                            f"{self.classes_.tolist()}; fit the stages on data with every label")

        if self.prefit or self.cv is None:
            probas = [np.asarray(est.predict_proba(X_val)) for _, est in fitted]
        correct = np.stack([self.classes_[p.argmax(axis=1)] == y_val for p in probas])
        conf = np.stack([confidence_scores(p, self.confidence) for p in probas[:-1]]) if len(probas) > 1 \
            else np.empty((0, len(y_val)))
        self.costs_, self.call_overhead_ = self._stage_costs(fitted, X_val)
        # rows per call the costs were measured at (fewer than cost_batch_size on small validation sets)
        self.cost_batch_ = batch = min(int(self.cost_batch_size), len(y_val))

        self.curve_ = self._with_bound(evaluate_grid(conf, correct, self.costs_, self._grids(conf),
                                                     self.call_overhead_, batch), len(y_val))
        self.reference_accuracy_ = float(correct[-1].mean())
        self.reference_cost_ = float(self.costs_[-1])
        if self.thresholds is None:
            choice = self._choose()
        else:  # the user's thresholds, placed on the curve so it stays comparable
            given = self._with_bound(evaluate_grid(conf, correct, self.costs_,
                                                   [np.array([t]) for t in self.thresholds], self.call_overhead_, batch),
                                     len(y_val))
            self.curve_ = {k: np.concatenate([self.curve_[k], given[k]]) for k in self.curve_}
            self.curve_["pareto"] = _pareto(self.curve_["accuracy"], self.curve_["cost"])
            self.goal_met_ = True
            choice = len(self.curve_["accuracy"]) - 1
        self.thresholds_ = self.curve_["thresholds"][choice].copy()
        self.validation_accuracy_ = float(self.curve_["accuracy"][choice])
        self.mean_cost_ = float(self.curve_["cost"][choice])
        self.stage_share_ = {name: float(s) for name, s in zip(names, self.curve_["stage_share"][choice])}
        self.expected_drop_ = float(self.curve_["drop"][choice])
        self.drop_bound_ = float(self.curve_["drop_bound"][choice])
        self.confidence_ = self._confidence()
        self.record_.update(goal=(f"cost_budget={self.cost_budget}" if self.cost_budget is not None else
                                  f"max_accuracy_drop={self.max_accuracy_drop} at confidence {self.confidence_:.3g}"),
                            expected_drop=self.expected_drop_, drop_bound=self.drop_bound_, confidence=self.confidence_,
                            thresholds=[float(t) for t in self.thresholds_], goal_met=bool(self.goal_met_))

        if self.refit and not self.prefit and self.cv is None:
            fitted = [(name, clone(est).fit(X, y)) for name, est in self.stages]
            check_same_classes(fitted, "stage")
        self.stages_ = fitted
        return self

    def _confidence(self) -> float:
        if self.risk is not None:
            return 1.0 - float(self.risk)
        from scipy.stats import norm

        return float(norm.cdf(float(self.safety)))

    def _with_bound(self, curve: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """Add each setting's drop against the last stage and its upper bound at ``confidence_``."""
        drop = (curve["worse"] - curve["better"]) / max(n, 1)
        if self.risk is not None:
            bound = drop_upper_bound(curve["worse"], curve["better"], n, float(self.risk))
        else:
            bound = drop + float(self.safety) * curve["drop_se"]
        # A setting that defers every row is the last stage itself: no drop on any data.
        bound = np.where(curve["stage_share"][:, -1] >= 1.0, 0.0, bound)
        return {**curve, "drop": drop, "drop_bound": bound}

    def _validate_params(self) -> None:
        if self.confidence not in CONFIDENCE_MEASURES:
            raise ConfigError(f"confidence={self.confidence!r} is not allowed; use one of {CONFIDENCE_MEASURES}")
        if not 0.0 <= float(self.max_accuracy_drop) <= 1.0:
            raise ConfigError(f"max_accuracy_drop={self.max_accuracy_drop!r} is outside [0, 1]; it is an absolute "
                              "accuracy difference, e.g. 0.002 for 0.2 points")
        if self.risk is not None and not (isinstance(self.risk, numbers.Real) and 0.0 < float(self.risk) <= 0.5):
            raise ConfigError(f"risk={self.risk!r} must be a probability in (0, 0.5], e.g. 0.05 for a promise that "
                              "holds with 95% confidence, or None for the older safety rule")
        if self.cv is not None and (isinstance(self.cv, bool) or not isinstance(self.cv, numbers.Integral)
                                    or int(self.cv) < 2):
            raise ConfigError(f"cv={self.cv!r} must be an integer >= 2 (folds of the cross-fitting, e.g. 5), or None "
                              "to hold out validation_fraction instead")
        if not (isinstance(self.safety, numbers.Real) and 0.0 <= float(self.safety) < 10.0):
            raise ConfigError(f"safety={self.safety!r} must be a number of standard errors in [0, 10), e.g. 1.0; "
                              "0 tunes to the validation point estimate")
        if self.cost_budget is not None and not float(self.cost_budget) > 0:
            raise ConfigError(f"cost_budget={self.cost_budget!r} must be > 0 (mean cost per sample), or None")
        if not 0.0 < float(self.validation_fraction) < 1.0:
            raise ConfigError(f"validation_fraction={self.validation_fraction!r} must be in (0, 1), e.g. 0.25")
        if self.cache is not None and not isinstance(self.cache, OOFCache):
            raise ConfigError(f"cache={self.cache!r} is not allowed; pass None or an ss.OOFCache()")
        if self.cache is not None and (self.prefit or self.cv is None):
            raise ConfigError("cache= serves the cross-fitting only, but prefit=True or cv=None fits no folds; "
                              "pass cache=None, or prefit=False with cv=5")
        if int(self.n_thresholds) < 2:
            raise ConfigError(f"n_thresholds={self.n_thresholds!r} must be at least 2")
        n_stages = len(self.stages) if isinstance(self.stages, list | tuple) else 0
        if self.thresholds is not None:
            t = np.asarray(self.thresholds, dtype=float).ravel()
            if len(t) != max(n_stages - 1, 0):
                raise ConfigError(f"thresholds has {len(t)} values for {n_stages} stages; pass one per stage "
                                  "but the last, or None to tune them")
            bad = t[(t < 0) | (t > 1) | ~np.isfinite(t)]
            if len(bad):
                raise ConfigError(f"threshold {float(bad[0])!r} is outside [0, 1]; confidences are in [0, 1], so use "
                                  "0 (always answer) to 1 (never answer)")
        if self.costs is not None:
            c = np.asarray(self.costs, dtype=float).ravel()
            if len(c) != n_stages or np.any(c < 0) or not np.all(np.isfinite(c)):
                raise ConfigError(f"costs={list(self.costs)!r} must hold one finite cost >= 0 per stage "
                                  f"({n_stages}), or be None to measure latency")

    def _stage_costs(self, fitted: list[tuple[str, Any]], X_val: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample cost at ``cost_batch_size`` rows and the fixed cost of one call, per stage.

        Each stage is timed on a full batch and on a small one (1/16 of it); the line through both,
        ``t(n) = overhead + per_row * n``, gives the per-call overhead that a later stage pays once
        for each batch in which any row is deferred to it.
        """
        n_stages = len(fitted)
        if self.costs is not None:
            return np.asarray(self.costs, dtype=float).ravel(), np.zeros(n_stages)
        m = min(int(self.cost_batch_size), _num_samples(X_val))
        k = max(1, m // 16)
        big, small = _safe_indexing(X_val, np.arange(m)), _safe_indexing(X_val, np.arange(k))
        times: dict[int, list[list[float]]] = {m: [[] for _ in fitted], k: [[] for _ in fitted]}
        with threads(self.n_threads):
            for _, est in fitted:  # warm-up: lazy initialisation is not per-sample cost
                est.predict_proba(big)
            for _ in range(max(1, int(self.cost_repeats))):
                for n, batch in ((m, big), (k, small)):
                    for i, (_, est) in enumerate(fitted):  # interleaved, so load drift hits all stages
                        t0 = time.perf_counter()
                        est.predict_proba(batch)
                        times[n][i].append((time.perf_counter() - t0) * 1e3)
        t_big = np.array([np.median(t) for t in times[m]])
        t_small = np.array([np.median(t) for t in times[k]])
        per_row = np.clip((t_big - t_small) / max(m - k, 1), 0.0, None)
        overhead = np.clip(t_big - per_row * m, 0.0, t_big)
        return t_big / m, overhead

    def _grids(self, conf: np.ndarray) -> list[np.ndarray]:
        n_free = len(conf)
        per_stage = int(self.n_thresholds) if n_free <= 1 else max(3, min(int(self.n_thresholds),
                                                                           int(4096 ** (1.0 / n_free))))
        qs = np.linspace(0.0, 1.0, per_stage)
        return [np.unique(np.concatenate([[0.0, 1.0], np.quantile(c, qs)])) for c in conf]

    def _choose(self) -> int:
        acc, cost = self.curve_["accuracy"], self.curve_["cost"]
        self.goal_met_ = True
        if self.cost_budget is not None:
            ok = cost <= float(self.cost_budget) + 1e-12
            if not ok.any():
                self.goal_met_ = False
                warnings.warn(f"no thresholds keep the mean cost within cost_budget={self.cost_budget}; the "
                              f"cheapest setting costs {cost.min():.4g}. Using it; raise the budget or add a "
                              "cheaper stage.", UserWarning, stacklevel=3)
                return int(np.lexsort((-acc, cost))[0])
            idx = np.flatnonzero(ok)
            return int(idx[np.lexsort((cost[idx], -acc[idx]))[0]])
        # never empty: "all stages defer" is on the grid, with no drop and a bound of 0
        idx = np.flatnonzero(self.curve_["drop_bound"] <= float(self.max_accuracy_drop) + 1e-12)
        return int(idx[np.lexsort((-acc[idx], cost[idx]))[0]])

    # -- predict -----------------------------------------------------------------------------
    def _route(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and the index of the answering stage for every row."""
        check_is_fitted(self, "stages_")
        X = row_indexable(X)
        n = _num_samples(X)
        proba = np.zeros((n, len(self.classes_)))
        answered_by = np.full(n, len(self.stages_) - 1)
        pending = np.arange(n)
        for s, (_, est) in enumerate(self.stages_):
            if len(pending) == 0:
                break
            p = np.asarray(est.predict_proba(_safe_indexing(X, pending)))
            if s < len(self.stages_) - 1:
                take = confidence_scores(p, self.confidence) > self.thresholds_[s]
            else:
                take = np.ones(len(pending), dtype=bool)
            proba[pending[take]] = p[take]
            answered_by[pending[take]] = s
            pending = pending[~take]
        return proba, answered_by

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities from whichever stage answered each row."""
        return self._route(X)[0]

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "stages_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def answered_by(self, X: Any) -> np.ndarray:
        """Index of the stage that answers each row (to compute stage shares on new data)."""
        return self._route(X)[1]
