"""How to combine member predictions and how to choose the combination, kept apart from estimators.

* pooling: arithmetic mean of probabilities, or geometric mean (the log-odds mean for two classes);
* scoring: any scikit-learn scorer name or callable, evaluated on stored predictions;
* choosing: weights on the simplex minimising out-of-fold loss, per-member temperatures, and
  Caruana et al. (2004) forward selection with replacement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import get_scorer

from ..errors import ConfigError, unknown_name

__all__ = ["POOLINGS", "pool", "proba_scorer", "learn_weights", "fit_temperature", "apply_temperature",
           "caruana_selection"]

POOLINGS = ("arithmetic", "geometric")
_EPS = 1e-12


def pool(P: np.ndarray, w: np.ndarray, pooling: str) -> np.ndarray:
    """Combine member outputs ``P`` of shape (members, n, classes) with weights ``w``.

    "geometric" is ``softmax(sum_k w_k log p_k)``: a confident, well-calibrated member can veto the
    others, which the arithmetic mean cannot. For regression (``P.ndim == 2``) it is the weighted mean.
    """
    w = np.asarray(w, dtype=float)
    if P.ndim == 2 or pooling == "arithmetic":
        return np.tensordot(w, P, axes=1)
    if pooling == "geometric":
        return softmax(np.tensordot(w, np.log(np.clip(P, _EPS, 1.0)), axes=1), axis=1)
    raise unknown_name("pooling", pooling, POOLINGS)


class _Stored(BaseEstimator):
    """A stand-in estimator whose outputs are given, so any scikit-learn scorer can rate them."""

    def __init__(self, out=None, classes=None):
        self.out = out
        self.classes = classes

    def __sklearn_is_fitted__(self):
        return True


class _StoredClassifier(ClassifierMixin, _Stored):
    @property
    def classes_(self):
        return self.classes

    def predict_proba(self, X):
        return self.out

    def predict(self, X):
        return self.classes[np.argmax(self.out, axis=1)]


class _StoredRegressor(RegressorMixin, _Stored):
    def predict(self, X):
        return self.out


def proba_scorer(scoring: Any, classes: np.ndarray | None) -> tuple[Callable[[np.ndarray, np.ndarray], float], str]:
    """Return ``score(y, out) -> float`` (greater is better) and its name.

    ``out`` is a probability matrix for classifiers and predictions for regressors. Log loss, Brier
    score and mean squared error have fast direct paths; every other scorer runs through
    scikit-learn's scorer on a stand-in estimator, so custom ``make_scorer`` objects work too.
    """
    if scoring is None:
        scoring = "neg_log_loss" if classes is not None else "neg_mean_squared_error"
    if scoring == "neg_log_loss" and classes is not None:
        return (lambda y, P: -_log_loss(y, P, classes)), "neg_log_loss"
    if scoring == "neg_mean_squared_error" and classes is None:
        return (lambda y, p: -float(np.mean((np.asarray(y, float) - p) ** 2))), scoring
    if isinstance(scoring, str):
        try:
            scorer = get_scorer(scoring)
        except ValueError as exc:
            raise ConfigError(f"scoring={scoring!r} is not a scikit-learn scorer name; use e.g. 'neg_log_loss', "
                              "'accuracy', 'neg_brier_score' or a callable scorer(estimator, X, y).") from exc
        name = scoring
    elif callable(scoring):
        scorer, name = scoring, getattr(scoring, "__name__", type(scoring).__name__)
    else:
        raise ConfigError(f"scoring={scoring!r} is not allowed; use a scorer name or a callable.")

    def score(y, out):
        stand_in = _StoredClassifier(out, classes) if classes is not None else _StoredRegressor(out)
        return float(scorer(stand_in, np.zeros((len(out), 1)), y))

    return score, name


def _log_loss(y, P, classes) -> float:
    idx = np.searchsorted(classes, y)
    p = P[np.arange(len(y)), idx] / np.maximum(P.sum(axis=1), _EPS)
    return float(-np.mean(np.log(np.clip(p, _EPS, 1.0))))


def _simplex(z: np.ndarray) -> np.ndarray:
    return softmax(z)


def learn_weights(P: np.ndarray, y, classes: np.ndarray | None, *, pooling: str = "arithmetic",
                  scoring: Any = None, seed: int = 0) -> np.ndarray:
    """Non-negative weights summing to one that maximise ``scoring`` of the pooled predictions.

    Log loss (arithmetic and geometric pooling) and squared error are convex in the weights, so
    SLSQP on the simplex with the exact gradient finds the optimum. Other scorers, often piecewise
    constant (accuracy), start from that optimum and refine with Powell on a softmax
    parametrisation; the better of the two is kept.
    """
    K = P.shape[0]
    w0 = np.full(K, 1.0 / K)
    if K == 1:
        return w0
    score, name = proba_scorer(scoring, classes)
    smooth = _smooth_objective(P, y, classes, pooling)
    res = minimize(smooth, w0, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * K,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
                   options={"maxiter": 200, "ftol": 1e-10})
    w = _clean(res.x if np.all(np.isfinite(res.x)) else w0)
    if name in ("neg_log_loss", "neg_mean_squared_error"):
        return w
    best = score(y, pool(P, w, pooling))
    z0 = np.log(np.clip(w, 1e-6, None))
    res2 = minimize(lambda z: -score(y, pool(P, _simplex(z), pooling)), z0, method="Powell",
                    options={"maxiter": 2000, "xtol": 1e-3, "ftol": 1e-6})
    w2 = _clean(_simplex(res2.x))
    return w2 if score(y, pool(P, w2, pooling)) > best else w


def _clean(w: np.ndarray) -> np.ndarray:
    w = np.clip(w, 0.0, None)
    w[w < 1e-6] = 0.0
    return w / w.sum()


def _smooth_objective(P, y, classes, pooling):
    """Loss and gradient in the weights: log loss for classifiers, squared error for regressors."""
    n = P.shape[1]
    if classes is None:
        y = np.asarray(y, float)

        def mse(w):
            r = np.tensordot(w, P, axes=1) - y
            return float(np.mean(r ** 2)), 2.0 * (P @ r) / n
        return mse
    idx = np.searchsorted(classes, y)
    if pooling == "arithmetic":
        q = P[:, np.arange(n), idx]  # (K, n): each member's probability of the true class

        def nll(w):
            mix = np.clip(w @ q, _EPS, None)
            return float(-np.mean(np.log(mix))), -(q / mix).mean(axis=1)
        return nll
    L = np.log(np.clip(P, _EPS, 1.0))  # (K, n, C)
    true = L[:, np.arange(n), idx]

    def geo(w):
        z = np.tensordot(w, L, axes=1)
        lse = logsumexp(z, axis=1)
        p = np.exp(z - lse[:, None])
        loss = float(-np.mean(w @ true - lse))
        grad = -(true - np.einsum("knc,nc->kn", L, p)).mean(axis=1)
        return loss, grad
    return geo


def fit_temperature(P: np.ndarray, y, classes: np.ndarray) -> float:
    """The temperature T > 0 minimising log loss of ``softmax(log p / T)`` (Guo et al., 2017)."""
    L = np.log(np.clip(P, _EPS, 1.0))
    idx = np.searchsorted(classes, y)
    rows = np.arange(len(y))

    def loss(log_t):
        z = L / np.exp(log_t)
        return float(-np.mean(z[rows, idx] - logsumexp(z, axis=1)))
    res = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def apply_temperature(P: np.ndarray, T: float) -> np.ndarray:
    if T == 1.0:
        return P
    return softmax(np.log(np.clip(P, _EPS, 1.0)) / T, axis=1)


def caruana_selection(P: np.ndarray, y, classes: np.ndarray | None, *, scoring: Any = None,
                      ensemble_size: int = 25, n_init: int = 1, pooling: str = "arithmetic",
                      ) -> tuple[np.ndarray, list[float], int]:
    """Forward selection with replacement (Caruana et al., 2004) on out-of-fold predictions.

    Starts from the ``n_init`` best single members (sorted initialisation), then adds, step by
    step, the member whose inclusion scores best, allowing repeats. Returns the counts at the best
    step seen (the best-iteration cut), the score after every step, and that step's index.

    Ties break towards the lower member index, so the result is deterministic.
    """
    K = P.shape[0]
    score, _ = proba_scorer(scoring, classes)
    singles = np.array([score(y, P[k]) for k in range(K)])
    order = np.argsort(-singles, kind="stable")
    counts = np.zeros(K, dtype=int)
    for k in order[:max(1, min(n_init, K))]:
        counts[k] += 1
    total = P[counts > 0].sum(axis=0) if pooling == "arithmetic" else None
    history = [score(y, pool(P, counts / counts.sum(), pooling))]
    best_counts, best_step = counts.copy(), 0
    for _ in range(int(ensemble_size) - int(counts.sum())):
        trial_scores = np.empty(K)
        for k in range(K):
            if pooling == "arithmetic":
                trial = (total + P[k]) / (counts.sum() + 1)
            else:
                c = counts.copy()
                c[k] += 1
                trial = pool(P, c / c.sum(), pooling)
            trial_scores[k] = score(y, trial)
        k = int(np.argmax(trial_scores))
        counts[k] += 1
        if total is not None:
            total = total + P[k]
        history.append(float(trial_scores[k]))
        if trial_scores[k] > history[best_step]:
            best_counts, best_step = counts.copy(), len(history) - 1
    return best_counts, history, best_step
