"""The cascade's accuracy promise on new data (issue 13.5): out-of-fold tuning and a one-sided bound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier

import slimstack as ss
from slimstack.ensemble._cascade_thresholds import drop_upper_bound
from slimstack.errors import ConfigError


@pytest.mark.parametrize("worse, better, n, risk", [(0, 0, 1000, 0.05), (12, 3, 2000, 0.05), (40, 25, 600, 0.1),
                                                    (5, 0, 300, 0.01)])
def test_bound_is_exact_clopper_pearson_at_half_the_risk_each_side(worse, better, n, risk):
    hi = binomtest(worse, n).proportion_ci(confidence_level=1 - risk, method="exact").high
    lo = binomtest(better, n).proportion_ci(confidence_level=1 - risk, method="exact").low
    assert drop_upper_bound(np.array([worse]), np.array([better]), n, risk)[0] == pytest.approx(hi - lo, abs=1e-9)


@pytest.mark.parametrize("p_worse, p_better, n", [(0.01, 0.002, 2000), (0.03, 0.02, 800), (0.004, 0.0, 3000)])
def test_bound_covers_the_true_drop_with_the_stated_confidence(p_worse, p_better, n):
    rng = np.random.default_rng(7)
    draws = rng.multinomial(n, [p_worse, p_better, 1 - p_worse - p_better], size=2000)
    bound = drop_upper_bound(draws[:, 0], draws[:, 1], n, 0.05)
    misses = float(np.mean(bound < p_worse - p_better))
    assert misses <= 0.05
    point = (draws[:, 0] - draws[:, 1]) / n  # the point estimate alone misses about half the time
    assert np.mean(point < p_worse - p_better) > 0.3


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=900, n_features=10, n_informative=5, n_classes=3, random_state=3)
    return X, y


def test_default_tunes_on_out_of_fold_predictions_of_every_row(data):
    X, y = data
    c = ss.Cascade([("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=6, random_state=0))],
                   costs=[1.0, 10.0], max_accuracy_drop=0.02).fit(X, y)
    assert c.record_["folds"] == 5 and c.record_["rows"] == len(y) and "out-of-fold" in c.record_["tuned_on"]
    assert c.confidence_ == 0.95 and c.expected_drop_ <= c.drop_bound_ <= 0.02
    curve = c.curve_
    ok = curve["drop_bound"] <= 0.02 + 1e-12
    assert c.mean_cost_ == pytest.approx(curve["cost"][ok].min())  # the cheapest setting that keeps the bound
    assert c.record_["drop_bound"] == c.drop_bound_ and c.record_["expected_drop"] == c.expected_drop_
    # the final stages are fitted on all rows: the tree reproduces a tree fitted on all of them
    full = DecisionTreeClassifier(max_depth=6, random_state=0).fit(X, y)
    np.testing.assert_array_equal(c.stages_[-1][1].predict(X), full.predict(X))
    # a smaller risk never gives a cheaper cascade
    strict = ss.Cascade(c.stages, costs=[1.0, 10.0], max_accuracy_drop=0.02, risk=0.01).fit(X, y)
    assert strict.drop_bound_ <= 0.02 and strict.mean_cost_ >= c.mean_cost_


def test_rare_class_lowers_the_folds_and_says_so(data):
    X, y = data
    y = y.copy()
    y[:3] = 7  # a class of three rows
    c = ss.Cascade([("lr", LogisticRegression(max_iter=300)), ("tree", DecisionTreeClassifier(random_state=0))],
                   costs=[1.0, 5.0]).fit(X, y)
    assert c.record_["folds"] == 3 and "cv=5 lowered to 3" in c.record_["folds_note"]


@pytest.mark.parametrize("kwargs, match", [({"risk": 0.0}, "risk=0.0 must be a probability in"),
                                           ({"risk": 0.7}, "risk=0.7"), ({"cv": 1}, "cv=1 must be an integer >= 2"),
                                           ({"cv": True}, "cv=True")])
def test_bad_risk_and_cv(data, kwargs, match):
    X, y = data
    with pytest.raises(ConfigError, match=match):
        ss.Cascade([("nb", GaussianNB()), ("lr", LogisticRegression())], costs=[1, 2], **kwargs).fit(X, y)
