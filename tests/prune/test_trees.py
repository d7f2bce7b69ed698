import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import slimstack as ss


@pytest.fixture(scope="module")
def data():
    tr = ss.datasets.load("breast_cancer", split="train", seed=0)
    va = ss.datasets.load("breast_cancer", split="val", seed=0)
    te = ss.datasets.load("breast_cancer", split="test", seed=0)
    return tr, va, te


def _acc(model, ds):
    return float((model.predict(ds.X) == ds.y).mean())


@pytest.mark.parametrize("criterion", ["gini", "entropy"])
def test_tree_gets_fewer_nodes_and_keeps_validation_accuracy(data, criterion):
    tr, va, te = data
    tree = DecisionTreeClassifier(criterion=criterion, random_state=0).fit(tr.X, tr.y)
    nodes = tree.tree_.node_count
    r = ss.prune(tree, ss.TreePruning(), data=va)
    assert tree.tree_.node_count == nodes  # input untouched
    assert r.model.tree_.node_count < nodes
    assert r.summary["score"] >= r.summary["score_before"]
    assert r.summary["criterion"] == criterion and r.record[0].action == "pruned"
    assert _acc(r.model, te) >= _acc(tree, te) - 0.03


def test_tolerance_trades_accuracy_for_nodes(data):
    tr, va, _ = data
    tree = DecisionTreeClassifier(random_state=0).fit(tr.X, tr.y)
    strict = ss.prune(tree, ss.TreePruning(tolerance=0.0), data=va)
    loose = ss.prune(tree, ss.TreePruning(tolerance=0.05), data=va)
    assert loose.model.tree_.node_count <= strict.model.tree_.node_count
    assert loose.summary["score"] >= max(p["score"] for p in loose.summary["path"]) - 0.05


def test_fixed_alpha_matches_sklearn_refit(data):
    tr, _, te = data
    tree = DecisionTreeClassifier(random_state=0).fit(tr.X, tr.y)
    alpha = float(tree.cost_complexity_pruning_path(tr.X, tr.y).ccp_alphas[-4])
    r = ss.prune(tree, ss.TreePruning(ccp_alpha=alpha))
    refit = DecisionTreeClassifier(random_state=0, ccp_alpha=alpha).fit(tr.X, tr.y)
    assert r.model.tree_.node_count == refit.tree_.node_count
    assert np.array_equal(r.model.predict(te.X), refit.predict(te.X))


def test_forest_and_regressor(data):
    tr, va, _ = data
    rf = RandomForestClassifier(n_estimators=10, random_state=0).fit(tr.X, tr.y)
    r = ss.prune(rf, ss.TreePruning(tolerance=0.01), data=va)
    assert r.summary["nodes"] < r.summary["nodes_before"] and len(r.record) == 10
    assert r.model.predict_proba(va.X).shape == (len(va), 2)
    reg = DecisionTreeRegressor(random_state=0).fit(tr.X, tr.y.astype(float))
    rr = ss.prune(reg, ss.TreePruning(), data=va)
    assert rr.model.tree_.node_count < reg.tree_.node_count


def test_saves_with_skops(data, tmp_path):
    tr, va, _ = data
    r = ss.prune(DecisionTreeClassifier(random_state=0).fit(tr.X, tr.y), ss.TreePruning(), data=va)
    ss.save(r.model, tmp_path / "tree")
    assert ss.load(tmp_path / "tree").tree_.node_count == r.model.tree_.node_count


@pytest.mark.parametrize("model, match", [
    (GradientBoostingClassifier(n_estimators=3), "line search"),
    (DecisionTreeClassifier(), "not fitted"),
])
def test_unsupported_or_unfitted(data, model, match):
    tr, va, _ = data
    if "Gradient" in type(model).__name__:
        model.fit(tr.X, tr.y)
    with pytest.raises(ss.ModelError, match=match):
        ss.prune(model, ss.TreePruning(), data=va)


def test_auto_alpha_needs_validation_data(data):
    tr, _, _ = data
    with pytest.raises(ss.DataError, match="pass data=ds_val"):
        ss.prune(DecisionTreeClassifier().fit(tr.X, tr.y), ss.TreePruning())
