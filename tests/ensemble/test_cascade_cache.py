"""Cascades sharing one OOFCache: a common last stage is cross-fitted once, with the same thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier

import slimstack as ss
from slimstack.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=600, n_features=10, n_informative=5, n_classes=3, random_state=5)


def _cascade(first, **kw):
    return ss.Cascade([("first", first), ("tree", DecisionTreeClassifier(max_depth=6, random_state=0))],
                      costs=[1.0, 10.0], max_accuracy_drop=0.03, **kw)


def test_shared_cache_fits_the_common_stage_once_and_tunes_the_same(data):
    X, y = data
    cache = ss.OOFCache()
    firsts = {"nb": GaussianNB(), "lr": LogisticRegression(max_iter=500)}
    cached = {n: _cascade(f, cache=cache).fit(X, y) for n, f in firsts.items()}
    # 5 folds + 1 full fit for each of nb, lr and the tree, which the second cascade takes from the cache
    assert cache.n_fits == 18
    assert cached["lr"].stages_[-1][1] is cached["nb"].stages_[-1][1]
    for n, f in firsts.items():
        alone = _cascade(f).fit(X, y)
        np.testing.assert_array_equal(cached[n].thresholds_, alone.thresholds_)
        np.testing.assert_allclose(cached[n].curve_["accuracy"], alone.curve_["accuracy"])
        np.testing.assert_allclose(cached[n].curve_["drop_bound"], alone.curve_["drop_bound"])
        np.testing.assert_allclose(cached[n].predict_proba(X), alone.predict_proba(X))
        assert cached[n].record_["folds"] == 5 and 0.0 < cached[n].stage_share_["first"] < 1.0


def test_cache_without_cross_fitting_is_refused(data):
    X, y = data
    fitted = [("nb", GaussianNB().fit(X, y)), ("tree", DecisionTreeClassifier(random_state=0).fit(X, y))]
    with pytest.raises(ConfigError, match="prefit=True or cv=None"):
        ss.Cascade(fitted, prefit=True, costs=[1.0, 2.0], cache=ss.OOFCache()).fit(X, y)
    with pytest.raises(ConfigError, match="ss.OOFCache"):
        _cascade(GaussianNB(), cache={}).fit(X, y)
