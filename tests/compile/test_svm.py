"""Kernel SVMs compile to GEMMs plus ORT's libsvm coupling: probabilities as scikit-learn's, shared distances."""

import warnings

import numpy as np
import onnx
import pytest
from sklearn.datasets import make_classification
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, NuSVC

import slimstack as ss

TOL = ss.CompiledModel.tolerance

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # SVC(probability=True) in scikit-learn 1.9


def _data(n_classes, n=240, seed=0):
    X, y = make_classification(n, 6, n_informative=4, n_redundant=1, n_classes=n_classes, n_clusters_per_class=1,
                               random_state=seed)
    return X[: n // 2], y[: n // 2], X[n // 2:]


def _ops(fast) -> list[str]:
    return [n.op_type for n in onnx.load_model_from_string(fast.onnx_bytes).graph.node]


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly", "sigmoid"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_svc_kernels_match_libsvm(kernel, n_classes):
    Xtr, ytr, Xte = _data(n_classes)
    svc = SVC(kernel=kernel, probability=True, random_state=0, gamma="scale", coef0=0.5).fit(Xtr, ytr)
    fast = ss.compile(svc)
    assert np.abs(fast.predict_proba(Xte) - svc.predict_proba(Xte)).max() < TOL
    assert "MatMul" in _ops(fast) and _ops(fast).count("SVMClassifier") == 1  # coupling only: no kernel loop in ORT


def test_nusvc_and_scaled_pipeline():
    Xtr, ytr, Xte = _data(3)
    for est in (NuSVC(probability=True, random_state=0), make_pipeline(StandardScaler(), SVC(probability=True,
                                                                                             random_state=0))):
        est.fit(Xtr, ytr)
        fast = ss.compile(est)
        assert fast.python_members == []
        assert np.abs(fast.predict_proba(Xte) - est.predict_proba(Xte)).max() < TOL


def test_rbf_svc_reads_the_knn_distances_over_the_same_rows(tmp_path):
    Xtr, ytr, Xte = _data(3)
    Xtr = np.vstack([Xtr, Xtr[:5]])  # repeated rows: a support vector may sit twice in the kNN's set
    ytr = np.concatenate([ytr, ytr[:5]])
    vote = ss.VotingEnsemble([("knn", KNeighborsClassifier(5)), ("svc", SVC(probability=True, random_state=0))])
    vote.fit(Xtr, ytr)
    fast = ss.compile(vote)
    # one distance MatMul (the kNN's), read by the SVC; the SVC's own MatMul is the pair weights
    shapes = [n for n in onnx.load_model_from_string(fast.onnx_bytes).graph.node if n.op_type == "MatMul"]
    assert len(shapes) == 2
    assert np.abs(fast.predict_proba(Xte) - vote.predict_proba(Xte)).max() < TOL
    svc = vote.estimators_[1].models[0]
    assert np.abs(ss.compile(svc).predict_proba(Xte) - svc.predict_proba(Xte)).max() < TOL  # its own distances
    ss.save(fast, tmp_path / "fast")  # ONNX bytes and JSON, no pickle
    assert sorted(p.name for p in (tmp_path / "fast").iterdir()) == ["compiled.json", "model.onnx", "slimstack.json"]
    np.testing.assert_array_equal(ss.load(tmp_path / "fast").predict_proba(Xte), fast.predict_proba(Xte))


def _dot_kernel(a, b):
    return a @ b.T


def test_svc_with_a_callable_kernel_stays_in_python_with_the_reason():
    Xtr, ytr, Xte = _data(3)
    vote = ss.VotingEnsemble([("svc", SVC(kernel=_dot_kernel, probability=True, random_state=0)),
                              ("knn", KNeighborsClassifier(5))])
    vote.fit(Xtr, ytr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = ss.compile(vote)
    assert fast.python_members == ["VotingEnsemble/svc"]
    assert any("stays in Python" in str(w.message) and "kernel" in str(w.message) for w in caught)
    assert np.abs(fast.predict_proba(Xte) - vote.predict_proba(Xte)).max() < TOL


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("shape", ["ovr", "ovo"])
def test_svc_predict_and_decision_function_compile(n_classes, shape):
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression

    Xtr, ytr, Xte = _data(n_classes)
    svc = SVC(random_state=0, decision_function_shape=shape)  # no probability: stacking reads decision_function
    stack = StackingClassifier([("svc", make_pipeline(StandardScaler(), svc)), ("lr", LogisticRegression())], cv=3)
    stack.fit(Xtr, ytr)
    fast = ss.compile(stack)
    assert fast.python_members == []
    assert np.abs(fast.predict_proba(Xte) - stack.predict_proba(Xte)).max() < TOL
    hard = ss.VotingEnsemble([("svc", SVC(random_state=0)), ("knn", KNeighborsClassifier(5)),
                              ("svc2", SVC(kernel="linear", random_state=0))], voting="hard").fit(Xtr, ytr)
    fast = ss.compile(hard)
    assert fast.python_members == []
    np.testing.assert_array_equal(fast.predict(Xte), hard.predict(Xte))
