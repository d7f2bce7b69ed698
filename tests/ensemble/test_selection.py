"""EnsembleSelection: Caruana forward selection with replacement, sorted init, best-iteration cut."""

from __future__ import annotations

import numpy as np
import pytest
from tests.ensemble.ens_helpers import small_members
from sklearn.dummy import DummyClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict

import slimstack as ss
from slimstack.ensemble._weights import caruana_selection


def test_selection_matches_a_hand_computed_greedy_path(data3):
    X, y = data3
    members = small_members() + [("prior", DummyClassifier(strategy="prior"))]
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    sel = ss.EnsembleSelection(members, ensemble_size=10, n_init=1, cv=cv).fit(X, y)
    oof = np.stack([cross_val_predict(e, X, y, cv=cv, method="predict_proba") for _, e in members])
    # step 0: the best single member; each later step: the best addition (with replacement)
    counts = np.zeros(4, int)
    counts[np.argmin([log_loss(y, p) for p in oof])] = 1
    path = [log_loss(y, np.tensordot(counts / counts.sum(), oof, axes=1))]
    for _ in range(9):
        trials = [log_loss(y, (np.tensordot(counts, oof, axes=1) + oof[k]) / (counts.sum() + 1)) for k in range(4)]
        counts[int(np.argmin(trials))] += 1
        path.append(min(trials))
    np.testing.assert_allclose(-sel.scores_, path, rtol=1e-6)
    assert sel.best_iteration_ == int(np.argmin(path))
    assert sel.weights_[3] == 0.0  # the constant member is never picked
    assert sel.counts_.sum() == sel.best_iteration_ + 1  # the best-iteration cut
    assert sel.n_fits_ == 16


def test_sorted_init_and_auto(data3):
    X, y = data3
    cache = ss.OOFCache()
    fixed = ss.EnsembleSelection(small_members(), n_init=2, ensemble_size=6, cv=3, random_state=0, cache=cache).fit(X, y)
    assert fixed.n_init_ == 2 and fixed.counts_.sum() >= 2
    auto = ss.EnsembleSelection(small_members(), n_init="auto", ensemble_size=6, cv=3, random_state=0,
                                cache=cache).fit(X, y)
    assert auto.oof_score_ >= fixed.oof_score_ - 1e-12  # auto tries n_init=2 too
    assert auto.n_fits_ == 0  # served by the cache


def test_any_scorer_and_refit_only_selected(data3):
    X, y = data3
    members = small_members() + [("prior", DummyClassifier(strategy="prior"))]
    sel = ss.EnsembleSelection(members, scoring="accuracy", ensemble_size=8, cv=3, refit=True,
                               random_state=0).fit(X, y)
    assert 0.6 < sel.oof_score_ <= 1.0
    picked = int((sel.counts_ > 0).sum())
    assert sel.n_fits_ == 4 * 3 + picked  # only the selected members are refitted
    assert sel.predict(X).shape == (300,)


def test_geometric_pooling_path_is_monotone_until_cut():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    good = np.eye(3)[y] * 0.6 + 0.4 / 3
    noisy = rng.dirichlet(np.ones(3), size=200)
    P = np.stack([good, noisy])
    counts, history, step = caruana_selection(P, y, np.arange(3), ensemble_size=5, pooling="geometric")
    assert counts[0] >= 1 and counts[1] == 0
    assert history[step] == pytest.approx(max(history))
