import numpy as np
import pandas as pd
import pytest

import slimstack as ss


@pytest.mark.parametrize("name, n, shape, k", [("digits", 1797, (1, 8, 8), 10), ("breast_cancer", 569, (30,), 2),
                                                ("wine", 178, (13,), 3), ("iris", 150, (4,), 3)])
def test_builtin_splits_are_disjoint_complete_and_deterministic(name, n, shape, k):
    parts = {s: ss.datasets.load(name, split=s, seed=3) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == n
    assert parts["train"].X.shape[1:] == shape and parts["train"].X.dtype == np.float32
    assert parts["train"].n_classes == k
    rows = [tuple(np.round(x.ravel(), 5)) for p in parts.values() for x in p.X]
    assert len(rows) >= n - 5  # a handful of duplicate rows exist in the raw data, nothing more
    again = ss.datasets.load(name, split="test", seed=3)
    np.testing.assert_array_equal(again.X, parts["test"].X)
    other = ss.datasets.load(name, split="test", seed=4)
    assert not np.array_equal(other.X, parts["test"].X)
    # stratified: every class is in the test split
    assert set(parts["test"].y) == set(range(k))


def test_digits_flat_and_scaled():
    ds = ss.datasets.load("digits", split="all")
    assert ds.X.max() == 1.0 and ds.X.min() == 0.0
    assert ds.flat().X.shape == (1797, 64)
    assert ss.datasets.load("digits", images=False).X.shape[1:] == (64,)


def test_stsb_is_shipped_and_read_without_quoting():
    train = ss.datasets.load("stsb", split="train")
    dev = ss.datasets.load("stsb", split="test")
    assert (len(train), len(dev)) == (5749, 1500)
    assert dev.task == "sts" and dev.scores.min() >= 0 and dev.scores.max() <= 5
    assert dev.pairs[0] == ("A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.")
    # unbalanced quotes stay inside their row instead of merging rows
    assert any('"' in s for pair in train.pairs for s in pair)
    assert len(dev.sentences()) == 3000
    assert dev.as_text().task == "text"


def test_user_files(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])
    df["label"] = rng.integers(0, 2, 100)
    df.to_csv(tmp_path / "d.csv", index=False)
    df.to_parquet(tmp_path / "d.parquet")
    np.savez(tmp_path / "d.npz", X=df[["a", "b", "c"]].to_numpy(), y=df["label"].to_numpy())
    for f in ("d.csv", "d.parquet", "d.npz"):
        ds = ss.datasets.load(tmp_path / f, split="all", target=None if f.endswith("npz") else "label")
        assert ds.X.shape == (100, 3) and ds.task == "classification"
        np.testing.assert_allclose(ds.X[:, 0], df["a"].to_numpy(), rtol=1e-6)
    tr = ss.datasets.load(tmp_path / "d.csv", split="train", target="label", seed=1)
    te = ss.datasets.load(tmp_path / "d.csv", split="test", target="label", seed=1)
    assert len(tr) + len(te) < 100 and len(te) == 20


def test_regression_file(tmp_path):
    df = pd.DataFrame({"x": np.arange(50.0), "y": np.linspace(0, 1, 50) ** 2})
    df.to_csv(tmp_path / "r.csv", index=False)
    assert ss.datasets.load(tmp_path / "r.csv", split="all", target="y").task == "regression"


@pytest.mark.parametrize(
    "make, kw, match",
    [
        (None, {"name": "digitz"}, r"unknown dataset 'digitz'; choose one of: breast_cancer, digits.*Did you mean 'digits'"),
        ("csv", {"target": "lable"}, r"has no target column 'lable'.*Did you mean 'label'"),
        ("nan", {"target": "label"}, r"NaN or Inf in the features \(first at row 3, column 'b'\).*impute"),
        (None, {"name": "missing.csv"}, r"does not exist"),
        ("csv", {"target": "label", "split": "tain"}, r"unknown split 'tain'"),
        ("csv", {"target": "label", "test_size": 1.2}, r"test_size=1.2 is outside"),
    ],
)
def test_bad_input(tmp_path, make, kw, match):
    df = pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6], "b": [1.0, 2, 3, np.nan, 5, 6], "label": [0, 1, 0, 1, 0, 1]})
    if make == "csv":
        df.fillna(0).to_csv(tmp_path / "d.csv", index=False)
    if make == "nan":
        df.to_csv(tmp_path / "d.csv", index=False)
    kw = dict(kw)
    name = kw.pop("name", tmp_path / "d.csv")
    if name == "missing.csv":
        name = tmp_path / "missing.csv"
    with pytest.raises(ss.SlimstackError, match=match):
        ss.datasets.load(name, **kw)


def test_nan_allowed_on_request(tmp_path):
    pd.DataFrame({"a": [1.0, np.nan, 3, 4, 5], "label": [0, 1, 0, 1, 0]}).to_csv(tmp_path / "d.csv", index=False)
    ds = ss.datasets.load(tmp_path / "d.csv", split="all", target="label", allow_nan=True)
    assert np.isnan(ds.X).sum() == 1
