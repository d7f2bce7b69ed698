import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import slimstack as ss


@pytest.mark.parametrize("build", [ss.zoo.digits_cnn, ss.zoo.digits_mlp, ss.zoo.digits_resnet])
def test_zoo_round_trip(tmp_path, build):
    model = build().eval()
    x = torch.randn(4, 1, 8, 8)
    path = ss.save(model, tmp_path / "m")
    manifest = json.loads((path / "slimstack.json").read_text())
    assert manifest["format"] == "torch" and manifest["spec"]["module"]["arch"] == type(model).__name__
    assert not any(p.suffix in (".pt", ".pkl") for p in path.iterdir())
    loaded = ss.load(path)
    assert type(loaded) is type(model)
    torch.testing.assert_close(loaded(x), model(x))


def test_sequential_and_resized_layers_rebuild(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 64, 5)).eval()
    # a structured-pruned copy: fewer channels than the description says
    model[0], model[1], model[4] = nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Linear(3 * 64, 5)
    model.eval()
    ss.save(model, tmp_path / "m")
    loaded = ss.load(tmp_path / "m")
    x = torch.randn(2, 1, 8, 8)
    assert loaded[0].out_channels == 3
    torch.testing.assert_close(loaded(x), model(x))


def test_sklearn_round_trip_via_skops(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    ds = ss.datasets.load("wine")
    rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(ds.X, ds.y)
    ss.save(rf, tmp_path / "rf")
    assert (tmp_path / "rf" / "model.skops").exists()
    np.testing.assert_array_equal(ss.load(tmp_path / "rf").predict(ds.X), rf.predict(ds.X))
    np.testing.assert_array_equal(ss.load(tmp_path / "rf" / "model.skops").predict(ds.X), rf.predict(ds.X))


def test_onnx_round_trip(tmp_path):
    import io

    model = nn.Linear(4, 2).eval()
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 4),), buf, input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
    (tmp_path / "raw.onnx").write_bytes(buf.getvalue())
    loaded = ss.load(tmp_path / "raw.onnx")
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(torch.as_tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    ss.save(loaded, tmp_path / "o")
    np.testing.assert_allclose(ss.load(tmp_path / "o")(x), loaded(x))


def test_pickle_needs_trusted(tmp_path):
    f = tmp_path / "model.pkl"
    f.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ss.UnsafeFileError, match=r"model.pkl is a pickle-based file.*pass trusted=True"):
        ss.load(f)
    assert ss.load(f, trusted=True) == {"weights": [1, 2, 3]}
    pt = tmp_path / "m.pt"
    torch.save(nn.Linear(2, 2), pt)
    with pytest.raises(ss.UnsafeFileError):
        ss.load(pt)
    assert isinstance(ss.load(pt, trusted=True), nn.Linear)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ss.ModelFileError, match="does not exist"):
        ss.load(tmp_path / "nope")
    ss.save(ss.zoo.digits_mlp(), tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ss.ModelFileError, match="corrupt or truncated"):
        ss.load(tmp_path / "m")
    (tmp_path / "m" / "slimstack.json").write_text("{not json")
    with pytest.raises(ss.ModelFileError, match=r"slimstack.json' is corrupt"):
        ss.load(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ss.ModelFileError, match="not written by ss.save"):
        ss.load(tmp_path / "empty")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(ss.ModelFileError, match="not a valid ONNX model"):
        ss.load(tmp_path / "bad.onnx")


def test_unsaveable_module_says_how_to_fix(tmp_path):
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ss.ModelError, match="register_architecture"):
        ss.save(Custom(), tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_save_is_atomic_and_keeps_the_old_model_on_failure(tmp_path, monkeypatch):
    from slimstack.io import _torch

    good = ss.zoo.digits_mlp().eval()
    ss.save(good, tmp_path / "m")

    def boom(module, file):
        file.write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(_torch, "save_state", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ss.save(ss.zoo.digits_mlp(hidden=(8,)), tmp_path / "m")
    monkeypatch.undo()
    x = torch.randn(2, 64)
    torch.testing.assert_close(ss.load(tmp_path / "m")(x), good(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary left behind
