"""One OOFCache serves voting weights, selection and stacking: members are fitted once per fold."""

from __future__ import annotations

import numpy as np
from tests.ensemble.ens_helpers import small_members
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

import slimstack as ss


def test_three_combiners_fit_members_once(data3):
    X, y = data3
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    cache = ss.OOFCache()
    vote = ss.VotingEnsemble(small_members(), weights="learn", cv=cv, cache=cache).fit(X, y)
    sel = ss.EnsembleSelection(small_members(), cv=cv, cache=cache).fit(X, y)
    stack = ss.StackingEnsemble(small_members(), cv=cv, cache=cache).fit(X, y)
    assert (vote.n_fits_, sel.n_fits_, stack.n_fits_) == (12, 0, 0)
    assert cache.n_fits == 12 and cache.n_hits == 6
    # the same fitted fold models back all three
    assert vote.estimators_[0].models[0] is stack.estimators_[0].models[0]
    # and results equal those of ensembles with private caches
    alone = ss.StackingEnsemble(small_members(), cv=cv).fit(X, y)
    np.testing.assert_allclose(alone.predict_proba(X), stack.predict_proba(X))


def test_cache_keys_on_params_data_and_folds(data3):
    X, y = data3
    cache = ss.OOFCache()
    ss.StackingEnsemble(small_members(), cv=3, random_state=0, cache=cache).fit(X, y)
    changed = small_members()
    changed[0][1].set_params(C=0.1)
    st = ss.StackingEnsemble(changed, cv=3, random_state=0, cache=cache).fit(X, y)
    assert st.n_fits_ == 3  # only the member whose parameters changed
    st = ss.StackingEnsemble(small_members(), cv=3, random_state=1, cache=cache).fit(X, y)
    assert st.n_fits_ == 9  # other folds
    st = ss.StackingEnsemble(small_members(), cv=3, random_state=0, cache=cache).fit(X[:-30], y[:-30])
    assert st.n_fits_ == 9  # other data


def test_clone_shares_the_cache(data3):
    cache = ss.OOFCache()
    est = ss.StackingEnsemble(small_members(), cache=cache)
    assert clone(est).cache is cache
    assert clone(est).get_params()["cache"] is cache
