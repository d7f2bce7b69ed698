"""``calibration=``, ``val=``, ``train=`` (issue 15's one vocabulary) and the old ``data=`` alias."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.errors import ConfigError, DataError


def _split(seed=3, n=240, d=6, k=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    parts = np.split(rng.permutation(n), [n // 2])
    return [ss.datasets.from_arrays(X[i], y[i]) for i in parts]


@pytest.fixture(scope="module")
def setup():
    train, val = _split()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)).eval()
    return ss.zoo.train(model, train, epochs=5, seed=0).eval(), train, val


def test_val_scores_the_fallback_exactly_as_data_did(setup):
    model, _, val = setup
    new = ss.quantize(model, ss.StaticInt8(backend="torch"), calibration=val, val=val, tolerance=0.02)
    old = ss.quantize(model, ss.StaticInt8(backend="torch"), calibration=val, data=val, tolerance=0.02)
    assert new.record.quality_float == old.record.quality_float == ss.measure.score(model, val)
    assert new.record.quality_quantized == old.record.quality_quantized
    assert new.summary["fallback_met"] is True and new.summary["tolerance"] == 0.02
    loss = (new.record.quality_float - new.record.quality_quantized) / new.record.quality_float
    assert loss <= 0.02  # tolerance is relative to the float model's quality


def test_qat_trains_on_train_only_and_scores_on_val(setup, monkeypatch):
    from slimstack.quantize import _api

    model, train, val = setup
    seen = []
    real = _api.train_qat
    monkeypatch.setattr(_api, "train_qat", lambda m, data, **kw: seen.append(data) or real(m, data, **kw))
    q = ss.quantize(model, ss.QAT(epochs=1), train=train, val=val)
    assert seen == [train]
    assert q.record.quality_metric == "accuracy" and q.record.quality_float == ss.measure.score(model, val)
    assert q.record.quality_quantized == ss.measure.score(q.model, val)
    seen.clear()
    old = ss.quantize(model, ss.QAT(epochs=1), data=train)  # the old spelling: data= is what QAT trains on
    assert seen == [train] and old.record.quality_float is None  # never scored on its own training rows


def test_bad_vocabulary_is_refused_with_the_fix(setup):
    model, train, val = setup
    with pytest.raises(ConfigError, match=r"pass val= .* or data= .*not both"):
        ss.quantize(model, ss.DynamicInt8(), val=val, data=val)
    with pytest.raises(DataError, match=r"tolerance=0.01 needs val="):
        ss.quantize(model, ss.DynamicInt8(backend="torch"), tolerance=0.01)
    with pytest.raises(DataError, match=r"QAT trains the model: pass train="):
        ss.quantize(model, ss.QAT(epochs=1), val=val)
    q = ss.quantize(model, ss.DynamicInt8(backend="torch"), train=train)
    assert q.record.notes == ["train= is not used: DynamicInt8 trains nothing (val= scores, calibration= sets ranges)"]
