"""The PyTorch backend: integer modules, each technique on digits, save/load, and the input left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.quantize import QuantConv2d, QuantLinear, WeightOnlyLinear
from slimstack.quantize.backends.torch import _kernels


def _acc(model, ds):
    with torch.inference_mode():
        return float((model(torch.as_tensor(ds.X)).argmax(1).numpy() == ds.y).mean())


def test_int4_pack_round_trips():
    q = torch.randint(-7, 8, (5, 64), generator=torch.Generator().manual_seed(0), dtype=torch.int64).to(torch.int8)
    packed = _kernels.pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.shape == (5, 32)
    assert torch.equal(_kernels.unpack_int4(packed), q)


def test_quant_linear_matches_float_and_both_kernels_agree():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(16, 64)
    q = QuantLinear.from_float(lin)
    y, ref = q(x), lin(x)
    assert torch.nn.functional.cosine_similarity(y, ref, dim=1).min() > 0.999
    scale, zp = _kernels.dynamic_qparams(x)
    slow = _kernels.int8_linear(x, scale, zp, q.weight_int8, q.weight_scale, q.bias, None)
    assert torch.allclose(y, slow, atol=1e-4)  # oneDNN (when present) and the dequantize path compute the same


@pytest.mark.parametrize("bits, max_err", [(8, 0.01), (4, 0.2)])
def test_weight_only_linear_error_shrinks_with_bits(bits, max_err):
    torch.manual_seed(0)
    lin = torch.nn.Linear(128, 16)
    q = WeightOnlyLinear.from_float(lin, bits=bits, group_size=32)
    rel = (q.dequantized() - lin.weight).abs().max() / lin.weight.abs().max()
    assert 0 < rel < max_err


def test_dynamic_int8_mlp_keeps_accuracy_and_input(mlp, digits, snapshot):
    unchanged = snapshot(mlp)
    r = ss.quantize(mlp, ss.DynamicInt8(backend="torch"))
    assert unchanged()
    assert r.record.backend == "torch" and r.record.quantized == ["net.1", "net.3", "net.5"]
    assert all(isinstance(r.model.net[i], QuantLinear) for i in (1, 3, 5))
    assert abs(_acc(r.model, digits[1]) - _acc(mlp, digits[1])) <= 0.01


@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse", "entropy"])
def test_static_int8_cnn_within_one_point(cnn, digits, observer, snapshot):
    unchanged = snapshot(cnn)
    r = ss.quantize(cnn, ss.StaticInt8(observer=observer, backend="torch"), calibration=digits[0])
    assert unchanged()
    assert any(isinstance(m, QuantConv2d) for m in r.model.modules())
    assert abs(_acc(r.model, digits[1]) - _acc(cnn, digits[1])) <= 0.01
    assert all(rec["act_scale"] > 0 for rec in r.record.layers if rec["status"] == "quantized")


def test_layers_without_int8_kernel_are_listed(cnn):
    r = ss.quantize(cnn, ss.DynamicInt8(backend="torch"))
    kept = r.record.kept_float
    assert kept and all("Conv2d" in r or "int8 kernel" in r for r in kept.values())
    assert any("use StaticInt8 for Conv2d" in why for why in kept.values())


def test_static_is_deterministic(mlp, digits):
    a = ss.quantize(mlp, ss.StaticInt8(observer="percentile", backend="torch"), calibration=digits[0], seed=3)
    b = ss.quantize(mlp, ss.StaticInt8(observer="percentile", backend="torch"), calibration=digits[0], seed=3)
    x = torch.as_tensor(digits[1].X[:32])
    assert torch.equal(a.model(x), b.model(x))


def test_qat_trains_and_converts_to_int8(mlp, digits, snapshot):
    unchanged = snapshot(mlp)
    r = ss.quantize(mlp, ss.QAT(epochs=1, lr=5e-4, seed=0), data=digits[0])
    assert unchanged()
    assert all(isinstance(r.model.net[i], QuantLinear) and r.model.net[i].static for i in (1, 3, 5))
    assert _acc(r.model, digits[1]) >= _acc(mlp, digits[1]) - 0.02


@pytest.mark.parametrize("cfg", [ss.DynamicInt8(backend="torch"), ss.WeightOnly(bits=4, group_size=32)],
                         ids=["int8", "int4"])
def test_save_load_round_trip_is_exact_and_small(mlp, digits, tmp_path, cfg):
    r = ss.quantize(mlp, cfg)
    ss.save(r.model, tmp_path / "q")
    ss.save(mlp, tmp_path / "f")
    loaded = ss.load(tmp_path / "q")
    x = torch.as_tensor(digits[1].X[:64])
    assert torch.equal(loaded(x), r.model(x))
    size = lambda p: (p / "model.safetensors").stat().st_size  # noqa: E731
    limit = 0.2 if getattr(cfg, "bits", 8) == 4 else 0.3  # int4 ~1/8 and int8 ~1/4 of fp32, plus scales
    assert size(tmp_path / "q") < size(tmp_path / "f") * limit
    assert not any(p.suffix in (".pkl", ".pt") for p in (tmp_path / "q").iterdir())


def test_measure_reports_int8_model(mlp, digits):
    r = ss.quantize(mlp, ss.DynamicInt8(backend="torch"))
    m = ss.measure(r.model, digits[1], runs=2, warmup=1)
    assert m.kind == "torch-int8" and m.params == sum(p.numel() for p in mlp.parameters())
    assert m.size_bytes < ss.measure(mlp, digits[1], runs=2, warmup=1).size_bytes / 2


def test_int4_table_dequantization_matches_bit_unpacking():
    p = torch.arange(256, dtype=torch.uint8).reshape(4, 64)
    assert torch.equal(_kernels.unpack_int4_float(p), _kernels.unpack_int4(p).float())


@pytest.mark.parametrize("opts", [dict(formats=("Q4_0", "Q8_0")), dict(untie_head=True), dict(distill_steps=10),
                                  dict(bits_per_weight=5.0), dict(format="IQ4_NL")])
def test_weight_only_refuses_causal_lm_options_on_other_models(mlp, snapshot, opts):
    unchanged = snapshot(mlp)
    with pytest.raises(ss.errors.ConfigError, match=f"{next(iter(opts))}=.*causal LMs.*DigitsMLP"):
        ss.quantize(mlp, ss.WeightOnly(bits=4, group_size=32, **opts))
    assert unchanged()
