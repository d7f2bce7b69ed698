"""Fold copies sharing work in the compiled graph: same probabilities as one subgraph per fold, and as Python.

Datasets the other compile tests do not use: wine (continuous), iris (repeated rows) and a
synthetic set with rows duplicated on purpose, so the union of the fold training sets must keep
a row's repeats.
"""

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine, make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import slimstack as ss
from slimstack.compile._members import _union_rows
from slimstack.errors import ConfigError

TOL = ss.CompiledModel.tolerance

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _wine():
    X, y = load_wine(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))
    return X[idx[:120]], y[idx[:120]], X[idx[120:]], y[idx[120:]]


def _duplicated():
    X, y = make_classification(160, 6, n_informative=4, n_classes=3, random_state=3)
    X = np.round(X, 1)  # coarse values: exact distance ties between distinct rows, too
    X, y = np.vstack([X, X[:30]]), np.concatenate([y, y[:30]])  # 30 rows twice
    idx = np.random.default_rng(1).permutation(len(y))
    return X[idx[:130]], y[idx[:130]], X[idx[130:]], y[idx[130:]]


def _stack(members, cv=5):
    return ss.StackingEnsemble(members, cv=StratifiedKFold(cv, shuffle=True, random_state=0), random_state=0)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_folds_share_one_distance_matmul_wine(weights):
    Xtr, ytr, Xte, _ = _wine()
    est = _stack([("knn", KNeighborsClassifier(9, weights=weights)), ("lr", make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000)))]).fit(Xtr, ytr)
    merged, per_fold = ss.compile(est), ss.compile(est, merge_folds=False)
    notes = [r.get("note", "") for r in merged.record]
    assert any("5 fold models sharing one distance MatMul" in n for n in notes)
    ops = lambda m: [n.op_type for n in __import__("onnx").load_model_from_string(m.onnx_bytes).graph.node]  # noqa: E731
    assert ops(merged).count("TopK") == 5
    assert ops(merged).count("MatMul") < ops(per_fold).count("MatMul")  # one distance MatMul instead of five
    p = merged.predict_proba(Xte)
    assert np.abs(p - per_fold.predict_proba(Xte)).max() < 1e-6
    assert np.abs(p - est.predict_proba(Xte)).max() < TOL


def test_all_fold_merges_equal_per_fold_graph_on_repeated_rows():
    Xtr, ytr, Xte, _ = _duplicated()
    members = [("knn", KNeighborsClassifier(7)), ("rf", RandomForestClassifier(8, random_state=0)),
               ("hgb", HistGradientBoostingClassifier(max_iter=8, random_state=0))]
    est = _stack(members).fit(Xtr, ytr)
    merged, per_fold = ss.compile(est), ss.compile(est, merge_folds=False)
    notes = [r.get("note", "") for r in merged.record]
    assert sum(n == "5 fold models in one tree node" for n in notes) == 2
    # repeated rows: the fold sets may admit no common row order; then each fold keeps its own graph, said so
    assert any(n.startswith("5 fold models sharing") or n.startswith("fold models not merged") for n in notes)
    assert np.abs(merged.predict_proba(Xte) - per_fold.predict_proba(Xte)).max() < 1e-6
    # the trees and the kNN votes match Python; exact distance ties may pick other neighbours than
    # scikit-learn's heap does, so the whole stack is checked against the per-fold graph above


def test_iris_repeated_rows_match_python():
    X, y = load_iris(return_X_y=True)  # iris holds repeated rows
    est = _stack([("knn", KNeighborsClassifier(5, weights="distance")),
                  ("rf", RandomForestClassifier(8, random_state=0))], cv=3).fit(X[::2], y[::2])
    merged, per_fold = ss.compile(est), ss.compile(est, merge_folds=False)
    assert np.abs(merged.predict_proba(X[1::2]) - per_fold.predict_proba(X[1::2])).max() < 1e-6


def test_union_rows_keeps_repeats_and_every_order():
    rng = np.random.default_rng(0)
    full = np.vstack([rng.normal(size=(40, 3)), np.zeros((3, 3))])  # one row three times
    folds = [np.sort(rng.choice(len(full), 30, replace=False)) for _ in range(4)]
    parts = [full[f] for f in folds]
    union, seqs = _union_rows(parts)
    for part, seq in zip(parts, seqs):
        assert np.array_equal(union[seq], part)  # each part's rows, in its order
        assert np.all(np.diff(seq) > 0)  # the union keeps every part's row order
    n_zero = max(int((p == 0).all(axis=1).sum()) for p in parts)
    assert int((union == 0).all(axis=1).sum()) == n_zero  # repeats kept, not more than one part needs
    assert len(union) <= len(full)


def test_merge_folds_must_be_bool():
    Xtr, ytr, _, _ = _wine()
    est = KNeighborsClassifier(3).fit(Xtr, ytr)
    with pytest.raises(ConfigError, match="merge_folds='yes' is not allowed"):
        ss.compile(est, merge_folds="yes")


def test_cascade_routes_on_float64_probabilities_of_a_torch_stage():
    """A threshold between float64 probabilities that float32 rounds to 1.0 alike routes as in Python."""
    X, y = make_classification(400, 8, n_informative=5, class_sep=3.0, random_state=5)
    mlp = ss.TorchClassifier(prefit=False, hidden_layer_sizes=(32,), epochs=100, lr=3e-2, random_state=0)
    mlp.fit(X[:200], y[:200])
    rf = RandomForestClassifier(20, random_state=0).fit(X[:200], y[:200])
    cas = ss.Cascade([("mlp", mlp), ("rf", rf)], prefit=True, random_state=0).fit(X[200:300], y[200:300])
    conf = mlp.predict_proba(X[300:]).max(axis=1)
    near_one = np.sort(conf[(conf > 1 - 3e-8) & (conf < 1)])  # all of these are 1.0 in float32
    assert len(near_one) >= 4
    cas.thresholds_ = np.array([near_one[len(near_one) // 2]])
    fast = ss.compile(cas)
    p, q = fast.predict_proba(X[300:]), cas.predict_proba(X[300:])
    assert np.abs(p - q).max() < TOL
    assert 0 < (cas.answered_by(X[300:]) == 0).sum() < len(q)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_cascade_routes_on_float64_votes_of_a_knn_stage(weights):
    """A threshold equal to a vote share (3/5 = 0.6, which float32 rounds up) routes as in Python."""
    X, y = make_classification(400, 8, n_informative=5, n_classes=3, random_state=5)
    knn = KNeighborsClassifier(5, weights=weights).fit(X[:200], y[:200])
    lr = LogisticRegression(max_iter=500).fit(X[:200], y[:200])
    cas = ss.Cascade([("knn", knn), ("lr", lr)], prefit=True, thresholds=[0.6], costs=[1.0, 2.0]).fit(X[200:], y[200:])
    conf = knn.predict_proba(X[200:]).max(axis=1)
    if weights == "uniform":
        assert (conf == 0.6).sum() >= 10  # rows exactly at the threshold: Python defers them
    fast = ss.compile(cas)
    p, q = fast.predict_proba(X[200:]), cas.predict_proba(X[200:])
    assert np.abs(p - q).max() < TOL
    assert 0 < (cas.answered_by(X[200:]) == 0).sum() < len(q)


@pytest.mark.parametrize("scale", [True, False])
def test_linear_fold_copies_in_one_matmul(scale):
    X, y = make_classification(240, 7, n_informative=4, n_classes=2, random_state=7)
    X = X * np.array([1, 10, 100, 0.1, 1, 5, 50])  # scales the scaler must undo
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)) if scale else LogisticRegression(max_iter=5000)
    rf = RandomForestClassifier(6, random_state=0)
    est = ss.VotingEnsemble([("lr", lr), ("rf", rf)], weights="learn", cv=4, random_state=0).fit(X[:160], y[:160])
    merged, per_fold = ss.compile(est), ss.compile(est, merge_folds=False)
    notes = [r.get("note", "") for r in merged.record]
    assert est.weights_[0] > 0  # the LR is evaluated, so its merged form is what gets compared
    assert "4 fold models in one MatMul (scalers folded into the weights)" in notes
    p = merged.predict_proba(X[160:])
    assert np.abs(p - per_fold.predict_proba(X[160:])).max() < 1e-6
    assert np.abs(p - est.predict_proba(X[160:])).max() < TOL


def test_multiclass_linear_folds_wine():
    Xtr, ytr, Xte, _ = _wine()
    est = _stack([("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))),
                  ("lr_raw", LogisticRegression(max_iter=5000, C=0.1))]).fit(Xtr, ytr)
    merged = ss.compile(est)
    assert sum("in one MatMul" in r.get("note", "") for r in merged.record) == 2
    assert np.abs(merged.predict_proba(Xte) - est.predict_proba(Xte)).max() < TOL
    assert np.abs(merged.predict_proba(Xte) - ss.compile(est, merge_folds=False).predict_proba(Xte)).max() < 1e-6
