"""StackingEnsemble: fold models kept, refit, passthrough, layers, splitters, leakage guard."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from tests.ensemble.ens_helpers import small_members, split
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_regression
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold, TimeSeriesSplit
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import slimstack as ss


def test_fold_models_kept_and_meta_matches_sklearn(data3):
    X, y = data3
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    ours = ss.StackingEnsemble(small_members(), LogisticRegression(max_iter=1000), cv=cv).fit(X, y)
    assert ours.n_fits_ == 3 * 5  # K x cv, not K x (cv + 1)
    assert all(len(f.models) == 5 for f in ours.estimators_)
    ref = StackingClassifier(small_members(), cv=cv, final_estimator=LogisticRegression(max_iter=1000)).fit(X, y)
    # Identical folds give identical out-of-fold meta-features, hence the same meta-model.
    np.testing.assert_allclose(ours.final_estimator_.coef_, ref.final_estimator_.coef_, rtol=1e-5, atol=1e-6)
    # Prediction averages the fold models: the meta-features are the fold-mean of member outputs.
    Z = ours.transform(X[:5])
    mean_lr = np.mean([m.predict_proba(X[:5]) for m in ours.estimators_[0].models], axis=0)
    np.testing.assert_allclose(Z[:, :3], mean_lr)


def test_refit_uses_full_models(data3):
    X, y = data3
    st = ss.StackingEnsemble(small_members(), cv=3, refit=True, random_state=0).fit(X, y)
    assert st.n_fits_ == 3 * 4
    assert all(len(f.models) == 1 for f in st.estimators_)
    assert st.score(X, y) > 0.8


def test_binary_meta_features_drop_a_column_and_passthrough(data2):
    X, y = data2
    st = ss.StackingEnsemble(small_members(), cv=3, random_state=0).fit(X, y)
    assert st.transform(X).shape == (len(X), 3)
    st = ss.StackingEnsemble(small_members(), cv=3, passthrough=True, random_state=0).fit(X, y)
    assert st.transform(X).shape == (len(X), 3 + X.shape[1])
    np.testing.assert_allclose(st.transform(X)[:, 3:], X)


def test_multi_layer(data3):
    X, y = data3
    Xtr, ytr, Xte, yte = split(X, y)
    layer2 = ss.StackingEnsemble([("lr", LogisticRegression(max_iter=500)),
                                  ("dt", DecisionTreeClassifier(max_depth=2, random_state=0))], cv=3, random_state=0)
    st = ss.StackingEnsemble(small_members(), final_estimator=layer2, cv=3, random_state=0).fit(Xtr, ytr)
    assert isinstance(st.final_estimator_, ss.StackingEnsemble)
    assert st.final_estimator_.n_fits_ == 6
    assert st.score(Xte, yte) > 0.7
    np.testing.assert_allclose(st.predict_proba(Xte).sum(axis=1), 1.0)


def test_time_series_split_leaves_first_block_out_of_meta_training(data3):
    X, y = data3
    st = ss.StackingEnsemble(small_members(), cv=TimeSeriesSplit(4), random_state=0).fit(X, y)
    assert st.n_oof_rows_ == 300 - 300 // 5  # the first of 5 blocks is never a test fold
    assert st.n_fits_ == 12


def test_groups_reach_group_splitters(data3):
    X, y = data3
    groups = np.arange(len(y)) // 10
    st = ss.StackingEnsemble(small_members(), cv=GroupKFold(3), random_state=0).fit(X, y, groups=groups)
    # every fold model was trained without any row of its test groups
    seen = set()
    for tr, te in GroupKFold(3).split(X, y, groups):
        assert not set(groups[tr]) & set(groups[te])
        seen |= set(te)
    assert len(seen) == len(y) and st.n_fits_ == 9
    # an int cv with groups becomes StratifiedGroupKFold
    st2 = ss.StackingEnsemble(small_members(), cv=3, random_state=0).fit(X, y, groups=groups)
    assert st2.n_oof_rows_ == len(y)


class InSample:
    """A broken splitter whose "test" rows are also training rows: in-sample predictions leak."""

    def split(self, X, y=None, groups=None):
        idx = np.arange(len(X))
        for i in range(5):
            yield idx, idx[i::5]

    def get_n_splits(self, *args, **kwargs):
        return 5


def _overfitters():
    return [("knn", KNeighborsClassifier(1)), ("dt", DecisionTreeClassifier(random_state=0))]


def test_leakage_guard_warns_on_leaky_folds(data3):
    X, y = data3
    with pytest.warns(ss.LeakageWarning, match="out-of-fold but"):
        st = ss.StackingEnsemble(_overfitters(), cv=InSample(), holdout=0.25, random_state=0).fit(X, y)
    assert st.leakage_["oof_score"] == 1.0 and st.leakage_["warned"]
    assert st.leakage_["gap"] > 0.05 and st.leakage_["holdout_rows"] == 75


def test_leakage_guard_quiet_on_honest_folds(data3):
    X, y = data3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ss.LeakageWarning)
        st = ss.StackingEnsemble(_overfitters(), cv=5, holdout=0.25, random_state=0).fit(X, y)
    assert not st.leakage_["warned"] and st.leakage_["gap"] < 0.05


def test_stack_method_choices(data3):
    X, y = data3
    st = ss.StackingEnsemble([("lr", LogisticRegression(max_iter=300)),
                              ("dt", DecisionTreeClassifier(max_depth=3, random_state=0))],
                             stack_method="predict", cv=3, random_state=0).fit(X, y)
    Z = st.transform(X)
    assert set(np.unique(Z)) <= {0.0, 1.0} and Z.shape == (300, 6)  # one-hot labels
    st = ss.StackingEnsemble([("lr", LogisticRegression(max_iter=300))], stack_method="decision_function",
                             cv=3, random_state=0).fit(X, y)
    assert st.transform(X).shape == (300, 3)


def test_regressor():
    X, y = make_regression(n_samples=200, n_features=5, noise=5.0, random_state=0)
    st = ss.StackingEnsembleRegressor([("lin", LinearRegression()),
                                       ("dt", DecisionTreeRegressor(max_depth=3, random_state=0))],
                                      cv=4, random_state=0).fit(X, y)
    assert st.n_fits_ == 8 and st.score(X, y) > 0.95


def test_deterministic_and_input_unchanged(data3):
    X, y = data3
    X0 = X.copy()
    a = ss.StackingEnsemble(small_members(), cv=3, random_state=0).fit(X, y).predict_proba(X)
    b = ss.StackingEnsemble(small_members(), cv=3, random_state=0).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(X, X0)


def test_refit_reproduces_sklearn_stacking(data3):
    X, y = data3
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    ours = ss.StackingEnsemble(small_members(), LogisticRegression(max_iter=1000), cv=cv, refit=True).fit(X, y)
    ref = StackingClassifier(small_members(), LogisticRegression(max_iter=1000), cv=cv).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-6, atol=1e-8)


def test_default_meta_model_tunes_c_by_log_loss(data3):
    """The default meta-model picks C by out-of-fold log loss and is no worse there than C=1."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import log_loss
    from sklearn.model_selection import cross_val_predict

    X, y = data3
    st = ss.StackingEnsemble(small_members(), cv=5, random_state=0).fit(X, y)
    meta = st.final_estimator_
    assert isinstance(meta, LogisticRegressionCV) and meta.scoring == "neg_log_loss" and len(meta.Cs_) == 10
    Z = st.transform(X)
    fixed = log_loss(y, cross_val_predict(LogisticRegression(max_iter=1000), Z, y, cv=5, method="predict_proba"))
    tuned = log_loss(y, cross_val_predict(LogisticRegression(C=float(meta.C_[0]), max_iter=2000), Z, y, cv=5,
                                          method="predict_proba"))
    assert tuned <= fixed + 1e-9
    # a class with one row cannot be cross-validated: plain LogisticRegression takes over
    y1 = y.copy()
    y1[np.flatnonzero(y == y.max())[1:]] = y.min()
    tiny = ss.StackingEnsemble(small_members(), cv=2, random_state=0)
    assert type(tiny._final(y1)).__name__ == "LogisticRegression"


class _Slow(ClassifierMixin, BaseEstimator):
    """A logistic regression whose fit also sleeps: the dear member for refit='auto'."""

    def __init__(self, pause=0.05):
        self.pause = pause

    def fit(self, X, y):
        time.sleep(self.pause)
        self.lr_ = LogisticRegression(max_iter=500).fit(X, y)
        self.classes_ = self.lr_.classes_
        return self

    def predict_proba(self, X):
        return self.lr_.predict_proba(X)

    def predict(self, X):
        return self.lr_.predict(X)


def test_refit_auto_refits_the_cheap_members_only(data3):
    X, y = data3
    members = [("nb", GaussianNB()), ("slow", _Slow(0.05))]
    st = ss.StackingEnsemble(members, cv=3, refit="auto", random_state=0).fit(X, y)
    assert st.refit_members_ == ["nb"]  # its refit costs ~0 of the budget; the slow one's would exceed it
    nb, slow = st.estimators_
    assert len(nb.models) == 1 and len(slow.models) == 3 and slow.fit_seconds >= 0.05
    assert st.n_fits_ == 2 * 3 + 1
    # the same choice pinned by name gives the same model
    pinned = ss.StackingEnsemble(members, cv=3, refit=["nb"], random_state=0).fit(X, y)
    assert pinned.refit_members_ == ["nb"]
    np.testing.assert_allclose(pinned.predict_proba(X), st.predict_proba(X))
    # a zero budget refits nothing; a full budget refits both
    assert ss.StackingEnsemble(members, cv=3, refit="auto", refit_budget=0.0).fit(X, y).refit_members_ == []
    assert ss.StackingEnsemble(members, cv=3, refit="auto", refit_budget=1.0).fit(X, y).refit_members_ == ["nb", "slow"]


@pytest.mark.parametrize("refit, match", [("always", "refit='always'"), (["nb", "tree"], "not members"),
                                          ({"nb": 1}, "not members")])
def test_bad_refit(data3, refit, match):
    X, y = data3
    with pytest.raises(ss.errors.ConfigError, match=match):
        ss.StackingEnsemble([("nb", GaussianNB())], cv=3, refit=refit).fit(X, y)
