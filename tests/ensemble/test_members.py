"""PyTorch, ONNX and frozen prefit members: used as given, never refitted, never modified."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.ensemble.ens_helpers import split
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import slimstack as ss
from slimstack.ensemble._members import module_to_onnx_bytes


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return split(X.astype(np.float32), y, frac=0.5, seed=0)


@pytest.fixture(scope="module")
def trained_module(iris):
    Xtr, ytr, _, _ = iris
    clf = ss.TorchClassifier(torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)),
                             prefit=False, epochs=60, batch_size=32, lr=1e-2, random_state=0, threads=1).fit(Xtr, ytr)
    return clf.module_


def test_torch_prefit_is_not_trained_or_modified(iris, trained_module):
    Xtr, ytr, Xte, yte = iris
    before = {k: v.clone() for k, v in trained_module.state_dict().items()}
    clf = ss.TorchClassifier(trained_module).fit(Xte, yte)  # prefit: fit only records classes_
    assert clf.module_ is not trained_module
    for k, v in trained_module.state_dict().items():
        assert torch.equal(v, before[k])
    with torch.no_grad():
        ref = torch.softmax(trained_module(torch.from_numpy(Xte)), 1).numpy()
    np.testing.assert_allclose(clf.predict_proba(Xte), ref, rtol=1e-5)
    assert clf.score(Xte, yte) > 0.85


def test_torch_trained_inside_fit_is_seeded(iris):
    Xtr, ytr, Xte, yte = iris
    a = ss.TorchClassifier(prefit=False, epochs=30, random_state=3, threads=1).fit(Xtr, ytr).predict_proba(Xte)
    b = ss.TorchClassifier(prefit=False, epochs=30, random_state=3, threads=1).fit(Xtr, ytr).predict_proba(Xte)
    np.testing.assert_array_equal(a, b)


def test_raw_module_onnx_and_frozen_members_in_one_ensemble(iris, trained_module):
    Xtr, ytr, Xte, yte = iris
    onnx_bytes = module_to_onnx_bytes(trained_module, Xtr[:2])
    lr = LogisticRegression(max_iter=500).fit(Xtr, ytr)
    coef = lr.coef_.copy()
    members = [("torch", trained_module), ("onnx", ss.OnnxClassifier(onnx_bytes)), ("lr", ss.Frozen(lr)),
               ("dt", DecisionTreeClassifier(max_depth=3, random_state=0))]
    # Train the combiner on the other half: the frozen members never saw it.
    for est in (ss.VotingEnsemble(members, weights="learn", cv=3, random_state=0),
                ss.StackingEnsemble(members, cv=3, random_state=0),
                ss.EnsembleSelection(members, cv=3, random_state=0)):
        est.fit(Xte, yte)
        assert est.n_fits_ == 3  # only the decision tree is fitted, once per fold
        assert est.score(Xte, yte) > 0.85
    np.testing.assert_array_equal(lr.coef_, coef)  # the frozen model is untouched
    vote = ss.VotingEnsemble(members[:3]).fit(Xte, yte)
    assert vote.estimators_[2].models[0] is members[2][1]  # used as is, not cloned
    p_torch = vote.estimators_[0].output(Xtr, "predict_proba", vote.classes_)
    p_onnx = vote.estimators_[1].output(Xtr, "predict_proba", vote.classes_)
    np.testing.assert_allclose(p_torch, p_onnx, atol=1e-5)  # ONNX export computes the same thing


def test_onnx_from_path(tmp_path, iris, trained_module):
    Xtr, ytr, Xte, yte = iris
    path = tmp_path / "m.onnx"
    path.write_bytes(module_to_onnx_bytes(trained_module, Xtr[:2]))
    clf = ss.OnnxClassifier(str(path)).fit(Xte, yte)
    assert clf.score(Xte, yte) > 0.85
    import pickle
    clone = pickle.loads(pickle.dumps(clf))  # the session is rebuilt, not pickled
    np.testing.assert_allclose(clone.predict_proba(Xte), clf.predict_proba(Xte))


def test_torch_regressor_prefit_and_trained():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    reg = ss.TorchRegressor(prefit=False, hidden_layer_sizes=(), epochs=60, lr=5e-2, random_state=0, threads=1).fit(X, y)
    assert reg.score(X, y) > 0.99
    frozen = ss.TorchRegressor(reg.module_).fit(X, y)  # prefit: the module alone, no target scaling
    assert frozen.predict(X).shape == (200,)


def test_frozen_clone_returns_same_object(iris):
    from sklearn.base import clone

    Xtr, ytr, _, _ = iris
    lr = LogisticRegression(max_iter=500).fit(Xtr, ytr)
    f = ss.Frozen(lr)
    assert clone(f) is f
    vote = ss.VotingEnsemble([("lr", f), ("lr2", LogisticRegression())])
    assert clone(vote).estimators[0][1] is f
