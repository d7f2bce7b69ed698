"""HierarchicalClassifier: estimator contract, derived and given groups, routing, bad hierarchies."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

import slimstack as ss
from slimstack.ensemble import HierarchicalClassifier
from slimstack.ensemble._hierarchy import groups_from_confusion
from slimstack.errors import ConfigError, DataError, ModelError


@parametrize_with_checks([
    HierarchicalClassifier(GaussianNB(), cv=2),
    HierarchicalClassifier(GaussianNB(), routing="soft", n_groups=2, cv=2),
])
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)


GROUPS = {"round": [0, 6, 8, 9], "straight": [1, 4, 7], "curly": [2, 3, 5]}


def test_public_name():
    assert ss.HierarchicalClassifier is HierarchicalClassifier


def test_groups_from_confusion_joins_confused_classes():
    c = np.array([[50, 9, 0, 0, 1],
                  [8, 50, 0, 1, 0],
                  [0, 0, 50, 0, 7],
                  [0, 1, 0, 59, 0],
                  [0, 0, 6, 0, 50]])
    np.testing.assert_array_equal(groups_from_confusion(c, 3), [0, 0, 1, 2, 1])
    np.testing.assert_array_equal(groups_from_confusion(c, 1), [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(groups_from_confusion(c, 5), [0, 1, 2, 3, 4])
    with pytest.raises(ConfigError, match="n_groups=6"):
        groups_from_confusion(c, 6)


def test_derived_groups_cover_all_classes(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = HierarchicalClassifier(LogisticRegression(max_iter=500), n_groups=3).fit(X_tr, y_tr)
    assert clf.confusion_.shape == (10, 10)
    members = np.sort(np.concatenate(list(clf.groups_.values())))
    np.testing.assert_array_equal(members, np.arange(10))
    assert len(clf.groups_) == 3
    # the most confused pair (off-diagonal, symmetrised) ends up in one group
    p = clf.confusion_ / clf.confusion_.sum(1, keepdims=True)
    s = p + p.T
    np.fill_diagonal(s, 0)
    a, b = np.unravel_index(s.argmax(), s.shape)
    assert clf.predict_group(X_te[:1]).shape == (1,)
    assert any(a in g and b in g for g in clf.groups_.values())
    assert clf.score(X_te, y_te) > 0.9


@pytest.mark.parametrize("routing", ["hard", "soft"])
def test_given_groups_and_routing(digits, routing):
    X_tr, X_te, y_tr, y_te = digits
    clf = HierarchicalClassifier(LogisticRegression(max_iter=500), groups=GROUPS, routing=routing).fit(X_tr, y_tr)
    assert set(clf.specialists_) == set(GROUPS)
    proba = clf.predict_proba(X_te)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert clf.score(X_te, y_te) > 0.9
    if routing == "hard":  # hard routing puts all mass inside the router's chosen group
        group_names = clf.predict_group(X_te)
        for row, g in zip(proba[:50], group_names[:50]):
            outside = np.setdiff1d(np.arange(10), clf.groups_[g])
            assert row[outside].sum() == 0.0


def test_soft_routing_is_group_weighted_mixture(digits):
    X_tr, X_te, y_tr, _ = digits
    clf = HierarchicalClassifier(LogisticRegression(max_iter=500), groups=GROUPS, routing="soft").fit(X_tr, y_tr)
    x = X_te[:5]
    rp = clf.router_.predict_proba(x)
    for g, name in enumerate(GROUPS):
        spec = clf.specialists_[name]
        expected = rp[:, g:g + 1] * spec.predict_proba(x)
        np.testing.assert_allclose(clf.predict_proba(x)[:, spec.classes_], expected, rtol=1e-10)


def test_single_class_group_needs_no_specialist(digits):
    X_tr, X_te, y_tr, y_te = digits
    groups = {"zero": [0], "rest": [1, 2, 3, 4, 5, 6, 7, 8, 9]}
    clf = HierarchicalClassifier(LogisticRegression(max_iter=500), groups=groups).fit(X_tr, y_tr)
    assert clf.specialists_["zero"] is None
    assert any("single class" in r for r in clf.record_)
    zeros = X_te[y_te == 0]
    assert (clf.predict(zeros) == 0).mean() > 0.95


def test_per_group_specialists_dict(digits):
    X_tr, X_te, y_tr, y_te = digits
    specs = {"round": KNeighborsClassifier(3), "straight": GaussianNB(), "curly": LogisticRegression(max_iter=500)}
    clf = HierarchicalClassifier(LogisticRegression(max_iter=500), specs, GROUPS).fit(X_tr, y_tr)
    assert isinstance(clf.specialists_["round"], KNeighborsClassifier)
    assert not hasattr(specs["round"], "classes_")  # inputs cloned, never fitted in place
    np.testing.assert_array_equal(clf.specialists_["straight"].classes_, [1, 4, 7])


def test_prefit_members(digits):
    X_tr, X_te, y_tr, y_te = digits
    groups = {"low": [0, 1, 2, 3, 4], "high": [5, 6, 7, 8, 9]}
    router = LogisticRegression(max_iter=500).fit(X_tr, np.where(y_tr < 5, "low", "high"))
    low = LogisticRegression(max_iter=500).fit(X_tr[y_tr < 5], y_tr[y_tr < 5])
    high = LogisticRegression(max_iter=500).fit(X_tr[y_tr >= 5], y_tr[y_tr >= 5])
    clf = HierarchicalClassifier(router, {"low": low, "high": high}, groups, prefit=True).fit(X_tr, y_tr)
    assert clf.router_ is router
    assert clf.score(X_te, y_te) > 0.85  # a linear router for low/high digits is the weak link
    inside = HierarchicalClassifier(LogisticRegression(max_iter=500), groups=groups).fit(X_tr, y_tr)
    assert (inside.predict(X_te) == clf.predict(X_te)).mean() > 0.99  # same models, fitted inside
    wrong = {"low": low, "high": low}
    with pytest.raises(ModelError, match=r"specialist 'high' predicts classes \[0, 1, 2, 3, 4\]"):
        HierarchicalClassifier(router, wrong, groups, prefit=True).fit(X_tr, y_tr)


@pytest.mark.parametrize("groups, match", [
    ({"a": [0, 1, 2, 3, 4], "b": [5, 6, 7, 8]}, "class 9 is in no group"),
    ({"a": [0, 1, 2, 3, 4], "b": [4, 5, 6, 7, 8, 9]}, "class 4 is in group 'a' and again in group 'b'"),
    ({"a": [0, 1, 2, 3, 4], "b": [5, 6, 7, 8, 9, 10]}, "lists class 10, which is not in y"),
    ({"a": list(range(10)), "b": []}, "group 'b' is empty"),
    ("abc", "groups must be a dict"),
])
def test_bad_hierarchy(digits, groups, match):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ConfigError, match=match):
        HierarchicalClassifier(GaussianNB(), groups=groups).fit(X_tr, y_tr)


def test_bad_parameters(digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ConfigError, match="routing='fuzzy'"):
        HierarchicalClassifier(GaussianNB(), routing="fuzzy").fit(X_tr, y_tr)
    with pytest.raises(ConfigError, match="no entry for group 'curly'"):
        HierarchicalClassifier(GaussianNB(), {"round": GaussianNB(), "straight": GaussianNB()}, GROUPS).fit(X_tr, y_tr)
    with pytest.raises(ConfigError, match="prefit=True needs groups"):
        HierarchicalClassifier(GaussianNB(), prefit=True).fit(X_tr, y_tr)
    with pytest.raises(DataError, match="at least 2 classes"):
        HierarchicalClassifier(GaussianNB()).fit(X_tr[:5], np.zeros(5))


def test_deterministic(digits):
    X_tr, X_te, y_tr, _ = digits
    a = HierarchicalClassifier(LogisticRegression(max_iter=300), n_groups=4, random_state=3).fit(X_tr, y_tr)
    b = HierarchicalClassifier(LogisticRegression(max_iter=300), n_groups=4, random_state=3).fit(X_tr, y_tr)
    assert {k: v.tolist() for k, v in a.groups_.items()} == {k: v.tolist() for k, v in b.groups_.items()}
    np.testing.assert_array_equal(a.predict_proba(X_te), b.predict_proba(X_te))
