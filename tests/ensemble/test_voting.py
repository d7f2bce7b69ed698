"""VotingEnsemble / VotingEnsembleRegressor: weights, pooling, temperatures, fit counts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_regression
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.tree import DecisionTreeRegressor

import slimstack as ss

from tests.ensemble.ens_helpers import small_members, split


def test_soft_equal_weights_matches_sklearn(data3):
    X, y = data3
    ours = ss.VotingEnsemble(small_members()).fit(X, y)
    ref = VotingClassifier(small_members(), voting="soft").fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-10)
    assert ours.n_fits_ == 3  # no out-of-fold work without learned weights


def test_hard_and_given_weights_match_sklearn(data3):
    X, y = data3
    for voting in ("soft", "hard"):
        ours = ss.VotingEnsemble(small_members(), voting=voting, weights=[2, 1, 1]).fit(X, y)
        ref = VotingClassifier(small_members(), voting=voting, weights=[2, 1, 1]).fit(X, y)
        np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_allclose(ours.weights_, [0.5, 0.25, 0.25])


def test_learned_weights_on_simplex_and_beat_uniform_out_of_fold(data3):
    X, y = data3
    # A constant member drags the plain mean; learned weights must push it to ~0.
    members = small_members() + [("prior", DummyClassifier(strategy="prior"))]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    vote = ss.VotingEnsemble(members, weights="learn", cv=cv).fit(X, y)
    w = vote.weights_
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert w[3] < 0.05
    assert vote.n_fits_ == 4 * 5
    # The learned weights are the out-of-fold optimum: better than uniform on the same OOF probabilities.
    oof = np.stack([cross_val_predict(e, X, y, cv=cv, method="predict_proba") for _, e in members])
    uniform = log_loss(y, oof.mean(axis=0))
    learned = log_loss(y, np.tensordot(w, oof, axes=1))
    assert learned < uniform - 0.05
    assert -vote.oof_score_ == pytest.approx(learned, rel=1e-6)


def test_geometric_pooling_and_temperature(data2):
    X, y = data2
    Xtr, ytr, Xte, yte = split(X, y)
    plain = ss.VotingEnsemble(small_members(), pooling="geometric").fit(Xtr, ytr)
    P = plain.predict_proba(Xte)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    # Binary geometric pooling equals the mean of the members' log-odds.
    probs = [fit.output(Xte, "predict_proba", plain.classes_)[:, 1] for fit in plain.estimators_]
    logit = np.mean([np.log(np.clip(p, 1e-12, 1)) - np.log(np.clip(1 - p, 1e-12, 1)) for p in probs], axis=0)
    np.testing.assert_allclose(P[:, 1], 1 / (1 + np.exp(-logit)), atol=1e-8)
    temp = ss.VotingEnsemble(small_members(), temperature=True, cv=4, random_state=0).fit(Xtr, ytr)
    # The unpruned-ish tree is over-confident: its fitted temperature softens it (T > 1).
    assert temp.temperatures_[2] > 1.0
    assert np.all(temp.temperatures_ > 0)


def test_hard_voting_learned_weights_use_accuracy(data3):
    X, y = data3
    vote = ss.VotingEnsemble(small_members(), voting="hard", weights="learn", cv=3, random_state=0).fit(X, y)
    assert 0.5 < vote.oof_score_ <= 1.0  # accuracy, not a log loss
    assert not hasattr(vote, "predict_proba")
    assert vote.transform(X).shape == (len(X), 3)


def test_any_scorer(data3):
    X, y = data3
    vote = ss.VotingEnsemble(small_members(), weights="learn", scoring="neg_brier_score", cv=3, random_state=0).fit(X, y)
    assert vote.weights_.sum() == pytest.approx(1.0)
    vote2 = ss.VotingEnsemble(small_members(), weights="learn", scoring="balanced_accuracy", cv=3,
                              random_state=0).fit(X, y)
    assert 0.5 < vote2.oof_score_ <= 1.0


def test_refit_option_counts_fits(data3):
    X, y = data3
    folds = ss.VotingEnsemble(small_members(), weights="learn", cv=3, random_state=0).fit(X, y)
    refit = ss.VotingEnsemble(small_members(), weights="learn", cv=3, refit=True, random_state=0).fit(X, y)
    assert folds.n_fits_ == 9 and refit.n_fits_ == 12
    assert all(len(f.models) == 3 for f in folds.estimators_)
    assert all(len(f.models) == 1 for f in refit.estimators_)
    np.testing.assert_allclose(folds.weights_, refit.weights_)


def test_regressor_learned_weights():
    X, y = make_regression(n_samples=200, n_features=5, noise=5.0, random_state=0)
    members = [("lin", LinearRegression()), ("dt", DecisionTreeRegressor(max_depth=2, random_state=0))]
    reg = ss.VotingEnsembleRegressor(members, weights="learn", cv=4, random_state=0).fit(X, y)
    assert reg.weights_[0] > 0.9  # y is linear: the linear model should carry the vote
    assert reg.predict(X).shape == (200,)
    plain = ss.VotingEnsembleRegressor(members).fit(X, y)
    assert reg.score(X, y) > plain.score(X, y)


def test_deterministic(data3):
    X, y = data3
    a = ss.VotingEnsemble(small_members(), weights="learn", cv=3, random_state=0).fit(X, y).predict_proba(X)
    b = ss.VotingEnsemble(small_members(), weights="learn", cv=3, random_state=0).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_members_not_modified(data3):
    X, y = data3
    lr = LogisticRegression(max_iter=300)
    ss.VotingEnsemble([("lr", lr), ("lr2", LogisticRegression(C=0.1, max_iter=300))], weights="learn", cv=3).fit(X, y)
    assert not hasattr(lr, "coef_")
