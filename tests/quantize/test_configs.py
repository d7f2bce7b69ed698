"""Config validation, round-trips, and the error messages of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack._config import config_from_dict, registered_configs
from slimstack.errors import ConfigError, DataError, ModelError, ShapeError

CONFIGS = [ss.DynamicInt8(), ss.DynamicInt8(per_channel=False, reduce_range=True, backend="torch"),
           ss.StaticInt8(observer="entropy", smoothquant_alpha=0.5, skip=("head",)),
           ss.WeightOnly(bits=4, group_size=32), ss.QAT(epochs=2, lr=1e-3)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_config_round_trips(cfg):
    assert config_from_dict(cfg.to_dict()) == cfg


def test_every_quantize_config_is_registered():
    assert set(registered_configs("quantize")) == {"DynamicInt8", "StaticInt8", "WeightOnly", "QAT"}


@pytest.mark.parametrize("make, match", [
    (lambda: ss.DynamicInt8(backend="tensorrt"), r"backend='tensorrt'.*'auto', 'torch', 'onnxruntime'"),
    (lambda: ss.StaticInt8(observer="kl"), r"observer='kl'.*'minmax', 'percentile', 'mse', 'entropy'"),
    (lambda: ss.StaticInt8(percentile=40.0), r"percentile=40.0 must be in \(50, 100\]"),
    (lambda: ss.StaticInt8(smoothquant_alpha=1.5), r"smoothquant_alpha=1.5 must be in \[0, 1\)"),
    (lambda: ss.WeightOnly(bits=3), r"bits=3.*4, 8"),
    (lambda: ss.WeightOnly(group_size=100), r"group_size=100.*32, 64, 96, 128, 192, 256"),
    (lambda: ss.QAT(epochs=0), r"epochs=0 must be a positive integer"),
    (lambda: ss.DynamicInt8(skip="fc"), r"skip='fc' must be a tuple"),
])
def test_bad_config_values_name_field_and_fix(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize("tol", [0.0, 1.0, -0.1, 2])
def test_tolerance_outside_open_unit_interval(mlp, digits, tol):
    with pytest.raises(ConfigError, match=rf"tolerance={tol!r} must be a relative quality loss in \(0, 1\)"):
        ss.quantize(mlp, ss.DynamicInt8(backend="torch"), data=digits[1], tolerance=tol)


def test_calibration_errors(mlp, digits):
    with pytest.raises(DataError, match="calibration set is empty"):
        ss.quantize(mlp, ss.StaticInt8(backend="torch"), calibration=np.zeros((0, 1, 8, 8), np.float32))
    bad = digits[0].X[:10].copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match=r"NaN or Inf in 1 of 10 rows"):
        ss.quantize(mlp, ss.StaticInt8(backend="torch"), calibration=bad)
    with pytest.raises(ShapeError, match=r"calibration samples have shape \(5,\)"):
        ss.quantize(mlp, ss.StaticInt8(backend="torch"), calibration=np.ones((8, 5), np.float32))
    with pytest.raises(DataError, match="StaticInt8 needs calibration="):
        ss.quantize(mlp, ss.StaticInt8(backend="torch"))


def test_non_module_and_wrong_config_are_refused(mlp):
    with pytest.raises(ModelError, match="takes a torch nn.Module"):
        ss.quantize(object(), ss.DynamicInt8())
    with pytest.raises(ConfigError, match="takes a quantization config"):
        ss.quantize(mlp, {"type": "DynamicInt8"})


def test_int4_group_size_that_does_not_fit_is_reported_per_layer():
    model = torch.nn.Sequential(torch.nn.Linear(96, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    r = ss.quantize(model, ss.WeightOnly(bits=4, group_size=64))
    assert r.record.kept_float == {"0": "in_features=96 is not divisible by group_size=64; group sizes that fit: [32]"}
    assert r.record.quantized == ["2"]


def test_onnxruntime_only_observer_mismatch_names_the_fix(mlp, digits):
    with pytest.raises(ConfigError, match=r"observer='mse' has no ONNX Runtime calibrator.*backend='torch'"):
        ss.quantize(mlp, ss.StaticInt8(observer="mse", backend="onnxruntime"), calibration=digits[0])


def test_public_names_exist_and_are_documented():
    import importlib

    q = importlib.import_module("slimstack.quantize")  # ss.quantize is this package, callable as the verb

    for name in q.__all__:
        obj = getattr(q, name)
        assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name
    assert "quantize" in ss.__all__ and ss.quantize is q and q.__verb__ is q.quantize
    for name in ("DynamicInt8", "StaticInt8", "WeightOnly", "QAT", "QuantResult"):
        assert name in ss.__all__ and getattr(ss, name) is getattr(q, name)
