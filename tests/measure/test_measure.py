import time

import numpy as np
import pytest
import torch
from torch import nn

import slimstack as ss
from slimstack.measure import softmax


class Slowed(nn.Module):
    """A copy of a model that does its work three times and then sleeps a little on every call."""

    def __init__(self, inner, sleep_ms=2.0):
        super().__init__()
        self.inner, self.sleep_ms = inner, sleep_ms

    def forward(self, x):
        for _ in range(2):
            self.inner(x)
        time.sleep(self.sleep_ms / 1e3)
        return self.inner(x)


def test_macs_match_a_hand_count():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    ds = ss.datasets.load("digits", split="test")
    m = ss.measure(lin, ds, runs=2, warmup=0)
    assert m.macs == 64 * 10
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 10))
    m = ss.measure(conv, ds, runs=2, warmup=0)
    # conv: 64 output positions x 4 channels x (1 x 3 x 3) taps; linear: 256 x 10
    assert m.macs == 64 * 4 * 9 + 256 * 10


def test_params_nonzero_and_size_as_saved(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()  # measured (and sized) in eval mode
    with torch.no_grad():
        model[1].weight[:, :32] = 0
    m = ss.measure(model, ss.datasets.load("digits", split="test"), runs=2, warmup=0)
    assert m.params == 650 and m.nonzero_params == 650 - 320
    ss.save(model, tmp_path / "m")
    on_disk = sum(f.stat().st_size for f in (tmp_path / "m").iterdir())
    assert m.size_bytes == on_disk


def test_quality_matches_a_direct_computation(digits, digits_cnn):
    test = digits["test"]
    m = ss.measure(digits_cnn, test, runs=3)
    with torch.no_grad():
        logits = digits_cnn(torch.as_tensor(test.X)).numpy()
    assert m.quality_metric == "accuracy"
    assert m.quality == pytest.approx((logits.argmax(1) == test.y).mean())
    p = softmax(logits.astype(np.float64))
    assert m.metrics["log_loss"] == pytest.approx(-np.log(p[np.arange(len(p)), test.y]).mean(), rel=1e-4)
    assert 0.9 < m.quality <= 1.0
    assert m.threads == 2 and m.batch_size == 256 and m.runs == 3
    assert m.latency_p90_ms >= m.latency_ms > 0
    assert m.throughput == pytest.approx(256 / (m.latency_ms / 1e3))
    assert m.peak_memory_bytes > 0
    d = m.to_dict()
    assert d["quality"] == m.quality and "latency_samples_ms" not in d


def test_reference_fidelity_is_one_for_the_same_model(digits, digits_cnn):
    m = ss.measure(digits_cnn, digits["test"], runs=2, reference=digits_cnn)
    assert m.metrics["cosine_fidelity"] == pytest.approx(1.0, abs=1e-6)


def test_harness_ranks_a_slowed_copy_slower_in_every_run(digits, digits_mlp):
    slowed = Slowed(digits_mlp)
    for _ in range(3):
        c = ss.compare({"fast": digits_mlp, "slow": slowed}, digits["test"], runs=15, warmup=2, quality=False,
                       cost=False, threads=1)
        assert c["slow"].latency_ms > c["fast"].latency_ms
        assert c.ratio("slow", "fast") > 1
        assert c.speedup("slow") < 1
    # quality is identical: the slowed copy computes the same outputs
    c = ss.compare({"fast": digits_mlp, "slow": slowed}, digits["test"], runs=2, cost=False)
    assert c["slow"].quality == c["fast"].quality


def test_compare_table_and_dict(digits, digits_cnn, digits_mlp):
    c = ss.compare({"cnn": digits_cnn, "mlp": digits_mlp}, digits["test"], runs=3)
    text = c.table()
    assert "cnn" in text and "mlp" in text and "accuracy" in text
    d = c.to_dict()
    assert d["baseline"] == "cnn" and [r["name"] for r in d["rows"]] == ["cnn", "mlp"]
    assert d["rows"][0]["speedup"] == 1.0
    assert c.ratio("mlp", "cnn", "params") == pytest.approx(c["mlp"].params / c["cnn"].params)
    with pytest.raises(ss.UnknownNameError, match="unknown variant 'rnn'"):
        c.ratio("rnn", "cnn")


def test_sklearn_and_onnx_models(digits):
    from sklearn.linear_model import LogisticRegression

    train, test = digits["train"].flat(), digits["test"].flat()
    lr = LogisticRegression(max_iter=300).fit(train.X, train.y)
    m = ss.measure(lr, test, runs=3)
    assert m.kind == "sklearn" and m.quality == pytest.approx(lr.score(test.X, test.y))
    assert m.params == 64 * 10 + 10 and "log_loss" in m.metrics

    model = nn.Sequential(nn.Linear(64, 10)).eval()
    onnx_model = _to_onnx(model)
    c = ss.compare({"torch": model, "onnx": onnx_model}, test, runs=3)
    assert c["onnx"].kind == "onnxruntime"
    assert c["onnx"].quality == pytest.approx(c["torch"].quality)
    assert c["onnx"].params == 650


def _to_onnx(model):
    import io

    buf = io.BytesIO()
    torch.onnx.export(model, (torch.randn(1, 64),), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    return ss.io.OnnxModel(buf.getvalue())


def test_regression_metrics():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=200)
    ds = ss.datasets.from_arrays(X, y, task="regression")
    lin = nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight[:] = torch.tensor([[1.0, -2.0, 0.5]])
        lin.bias.zero_()
    m = ss.measure(lin, ds, runs=2)
    assert m.quality_metric == "r2" and m.quality > 0.999 and m.metrics["mae"] < 0.02


@pytest.mark.parametrize(
    "model, data, match, error",
    [
        (nn.Linear(64, 10), "digits", r"cannot run on inputs of shape \(256, 1, 8, 8\).*ds.flat\(\)", ss.ShapeError),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), "digits", r"outputs shape \(3,\).*10 classes", ss.ShapeError),
        (object(), "digits", r"cannot measure a builtins.object", ss.ModelError),
        (nn.Linear(64, 10), "digitz", r"unknown dataset 'digitz'", ss.SlimstackError),
    ],
)
def test_bad_input(model, data, match, error):
    with pytest.raises(error, match=match):
        ss.measure(model, data, runs=1)


def test_bad_settings():
    with pytest.raises(ss.ConfigError, match="batch_size=0"):
        ss.measure(nn.Linear(64, 10), "digits", batch_size=0)
    with pytest.raises(ss.ConfigError, match="at least one model"):
        ss.compare({}, "digits")
