"""``ss.measure.score`` is what ``ss.measure`` reports, and ``ss.measure.time_interleaved`` is public."""

import time

import numpy as np
import pytest
import torch
from torch import nn

import slimstack as ss


class Sleepy(nn.Module):
    def __init__(self, inner, sleep_ms):
        super().__init__()
        self.inner, self.sleep_ms = inner, sleep_ms

    def forward(self, x):
        time.sleep(self.sleep_ms / 1e3)
        return self.inner(x)


def test_measure_quality_is_score_and_metrics_are_scores(digits, digits_mlp):
    test = digits["test"]
    m = ss.measure(digits_mlp, test, runs=1, warmup=0, cost=False)
    assert m.quality == ss.measure.score(digits_mlp, test)
    assert m.quality_metric == ss.measure.primary_metric(test, digits_mlp) == "accuracy"
    assert m.metrics == pytest.approx(ss.measure.scores(digits_mlp, test))
    with torch.no_grad():
        direct = float((digits_mlp.eval()(torch.as_tensor(test.X)).argmax(1).numpy() == test.y).mean())
    assert ss.measure.score(digits_mlp, test) == pytest.approx(direct)
    assert ss.measure.score(digits_mlp, test, "log_loss") == pytest.approx(m.metrics["log_loss"])


def test_scoring_keeps_the_callers_train_flags(digits, digits_mlp):
    digits_mlp.train()
    try:
        ss.measure.score(digits_mlp, digits["test"])
        assert all(m.training for m in digits_mlp.modules())
    finally:
        digits_mlp.eval()


def test_time_interleaved_returns_runs_samples_per_model(digits, digits_mlp):
    x = digits["test"].X[:32]
    t = ss.measure.time_interleaved({"fast": digits_mlp, "sleepy": Sleepy(digits_mlp, 5.0)}, x, threads=1,
                                    warmup=1, runs=4)
    assert set(t) == {"fast", "sleepy"} and all(len(v) == 4 for v in t.values())
    assert all(s > 0 for v in t.values() for s in v)
    assert min(t["sleepy"]) >= 5.0  # a lower bound the sleep guarantees, not a race between models


@pytest.mark.parametrize("kw, match", [
    ({"models": {}}, r"at least one model"),
    ({"runs": 0}, r"runs=0 must be >= 1"),
    ({"warmup": -1}, r"warmup=-1"),
])
def test_time_interleaved_bad_settings_name_the_value(digits, digits_mlp, kw, match):
    args = {"models": {"m": digits_mlp}, **kw}
    with pytest.raises(ss.ConfigError, match=match):
        ss.measure.time_interleaved(args.pop("models"), np.asarray(digits["test"].X[:4]), **args)


def test_one_softmax(digits):
    from slimstack.ensemble import _members
    from slimstack.measure import softmax

    z = np.random.default_rng(0).normal(size=(5, 3))
    assert np.allclose(softmax(z).sum(1), 1.0) and not hasattr(_members, "_softmax")
