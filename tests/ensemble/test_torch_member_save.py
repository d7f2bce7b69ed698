"""Ensembles holding torch members save and load without pickle (modules stored as ss.save files)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import slimstack as ss
from slimstack.io import pack_module, unpack_module


def _iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), np.array(["setosa", "versicolor", "virginica"])[y]


def test_cascade_with_a_trained_torch_member_in_a_pipeline_round_trips(tmp_path):
    X, y = _iris()
    mlp = ss.TorchClassifier(prefit=False, hidden_layer_sizes=(12,), epochs=15, threads=1, random_state=3)
    c = ss.Cascade(stages=[("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))),
                           ("mlp", make_pipeline(StandardScaler(), mlp))], max_accuracy_drop=0.02).fit(X, y)
    ss.save(c, tmp_path / "c")
    back = ss.load(tmp_path / "c")  # untrusted: no pickle, the module rebuilt by ss.load
    rng = np.random.default_rng(1)
    fresh = (X[rng.integers(0, len(X), 40)] + rng.normal(0, 0.2, (40, X.shape[1]))).astype(np.float32)
    np.testing.assert_array_equal(back.predict_proba(fresh), c.predict_proba(fresh))
    assert list(back.predict(fresh)) == list(c.predict(fresh))
    stage = back.stages_[1][1] if hasattr(back, "stages_") else None
    assert stage is None or isinstance(stage[-1].module_, torch.nn.Module)


def test_prefit_user_module_and_regressor_members_round_trip(tmp_path):
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        v = ss.VotingEnsembleRegressor(estimators=[("ridge", Ridge()), ("net", ss.TorchRegressor(net))]).fit(X, y)
        ss.save(v, tmp_path / "v")
        back = ss.load(tmp_path / "v")
        np.testing.assert_allclose(back.predict(X[:25]), v.predict(X[:25]), rtol=0, atol=1e-9)
    assert all(torch.equal(before[k], t) for k, t in net.state_dict().items())  # the user's module unchanged
    # plain pickling (joblib workers, deepcopy) is unchanged: modules stay modules, nothing packed
    state = ss.TorchRegressor(net).fit(X, y).__getstate__()
    assert isinstance(state["module_"], torch.nn.Module) and isinstance(state["module"], torch.nn.Module)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(v)).predict(X[:5]), v.predict(X[:5]), rtol=0, atol=1e-9)


def test_packed_module_file_names_stay_inside_their_folder():
    packed = pack_module(torch.nn.Linear(3, 2))
    files = next(iter(packed.values()))
    assert any(name.endswith(".safetensors") for name in files)
    assert isinstance(unpack_module(packed), torch.nn.Linear)
    evil = {next(iter(packed)): {**files, "../escape.txt": b"x"}}
    with pytest.raises(ss.errors.ModelFileError, match="outside its folder"):
        unpack_module(evil)
