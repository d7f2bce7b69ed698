"""Scoring uses the data's own labels, matched to the model's classes_ (not codes 0..K-1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import slimstack as ss
from slimstack.cli import main as cli

NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine is shared; one thread contends least
    with threadpool_limits(1):
        yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    return X[idx[:1200]], y[idx[:1200]], X[idx[1200:]], y[idx[1200:]]


@pytest.fixture(scope="module")
def lr(digits):
    X, y, _, _ = digits
    return LogisticRegression(max_iter=500).fit(X, y)


def _csv(path, X, y):
    df = pd.DataFrame(X, columns=[f"p{i}" for i in range(X.shape[1])])
    df["label"] = y
    df.to_csv(path, index=False)
    return path


def _quality(model, path):
    ds = ss.datasets.load(path, target="label", split="all")
    return ss.measure(model, ds, runs=1, warmup=0, cost=False)


def test_file_without_label_zero_scores_like_sklearn(tmp_path, digits, lr):
    _, _, X, y = digits
    keep = y != 0
    m = _quality(lr, _csv(tmp_path / "no0.csv", X[keep], y[keep]))
    assert m.quality == pytest.approx(lr.score(X[keep], y[keep]), abs=1e-12)
    assert m.quality > 0.9


def test_file_of_one_class_scores_like_sklearn(tmp_path, digits, lr):
    _, _, X, y = digits
    keep = y == 3
    m = _quality(lr, _csv(tmp_path / "threes.csv", X[keep], y[keep]))
    assert m.quality == pytest.approx(lr.score(X[keep], y[keep]), abs=1e-12)
    assert m.quality > 0.85


def test_string_labels_score_like_sklearn(tmp_path, digits):
    Xtr, ytr, X, y = digits
    lr = LogisticRegression(max_iter=500).fit(Xtr, NAMES[ytr])
    keep = y != 5  # "five" sorts second: without it, every later name would shift by one code
    m = _quality(lr, _csv(tmp_path / "names.csv", X[keep], NAMES[y[keep]]))
    assert m.quality == pytest.approx(lr.score(X[keep], NAMES[y[keep]]), abs=1e-12)
    assert m.quality > 0.85
    assert m.metrics["macro_f1"] > 0.85


def test_classes_the_model_does_not_know_are_named(tmp_path, digits):
    Xtr, ytr, X, y = digits
    small = LogisticRegression(max_iter=500).fit(Xtr[ytr < 5], ytr[ytr < 5])
    with pytest.warns(UserWarning, match=r"does not know class\(es\) 5, 6, 7, 8, 9"):
        m = _quality(small, _csv(tmp_path / "all.csv", X, y))
    assert m.quality == pytest.approx(small.score(X, y), abs=1e-12)
    assert any("does not know" in n for n in m.notes)


def test_torch_model_columns_are_the_files_labels(tmp_path, digits):
    """A module's output column j is class j: a file without label 0 is scored against labels 1..9."""
    Xtr, ytr, X, y = digits
    torch.manual_seed(0)
    net = ss.zoo.train(torch.nn.Sequential(torch.nn.Linear(64, 10)),
                       ss.datasets.from_arrays(Xtr, ytr), epochs=6, seed=0).eval()
    keep = y != 0
    m = _quality(net, _csv(tmp_path / "no0.csv", X[keep], y[keep]))
    with torch.no_grad():
        expect = (net(torch.as_tensor(X[keep], dtype=torch.float32)).argmax(1).numpy() == y[keep]).mean()
    assert m.quality == pytest.approx(expect, abs=1e-12) and m.quality > 0.85


def test_cli_measure_matches_labels(tmp_path, digits, lr, capsys):
    _, _, X, y = digits
    keep = y != 0
    ss.save(lr, tmp_path / "lr")
    path = _csv(tmp_path / "no0.csv", X[keep], y[keep])
    assert cli(["measure", str(tmp_path / "lr"), "--data", str(path), "--target", "label", "--split", "all",
                "--runs", "1", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["quality"] == pytest.approx(lr.score(X[keep], y[keep]), abs=1e-12)


@pytest.mark.parametrize("bad", [np.nan, None])
def test_nan_target_is_refused(tmp_path, digits, bad):
    _, _, X, y = digits
    labels = y.astype(object)
    labels[5] = bad
    path = _csv(tmp_path / "nan.csv", X, labels)
    with pytest.raises(ss.DataError, match=r"target has 1 missing value\(s\) \(first at row 5\)"):
        ss.datasets.load(path, target="label", split="all")
    with pytest.raises(ss.DataError, match="missing value"):
        ss.datasets.from_arrays(X, np.where(np.arange(len(y)) == 5, np.nan, y))
    assert cli(["measure", "whatever", "--data", str(path), "--target", "label"]) == 2


def test_single_class_training_target_is_refused(tmp_path, digits):
    _, _, X, y = digits
    path = _csv(tmp_path / "threes.csv", X[y == 3], y[y == 3])
    with pytest.raises(ss.DataError, match=r"single class 3; a classifier needs at least two"):
        ss.datasets.load(path, target="label", split="train")
    assert len(ss.datasets.load(path, target="label", split="all")) == int((y == 3).sum())  # measuring is fine


def test_string_feature_column_is_a_data_error(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"], "label": [0, 1, 0]}).to_csv(
        tmp_path / "s.csv", index=False)
    with pytest.raises(ss.DataError, match=r"feature columns \['colour'\] are not numeric .*'red'"):
        ss.datasets.load(tmp_path / "s.csv", target="label", split="all")


def test_training_on_labels_beyond_the_outputs_says_why(digits):
    Xtr, ytr, _, _ = digits
    with pytest.raises(ss.DataError, match=r"class id 9, but the model has 5 outputs"):
        ss.zoo.train(torch.nn.Sequential(torch.nn.Linear(64, 5)), ss.datasets.from_arrays(Xtr, ytr), epochs=1)
