"""The ONNX Runtime backend, backend="auto", the accuracy-aware fallback, and transformer paths (tiny BERT)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.quantize import OrtClassifier, OrtSentenceEncoder, QuantBertLayer, QuantLinear


def _acc(model, ds):
    return float((model(torch.as_tensor(ds.X)).argmax(1).numpy() == ds.y).mean())


@pytest.mark.parametrize("cfg", [ss.DynamicInt8(backend="onnxruntime"),
                                 ss.StaticInt8(observer="percentile", backend="onnxruntime")], ids=["dynamic", "static"])
def test_ort_classifier_keeps_interface_and_accuracy(mlp, digits, cfg, snapshot, tmp_path):
    unchanged = snapshot(mlp)
    r = ss.quantize(mlp, cfg, calibration=digits[0])
    assert unchanged()
    assert isinstance(r.model, OrtClassifier) and r.record.backend == "onnxruntime"
    out = r.model(torch.as_tensor(digits[1].X[:5]))
    assert isinstance(out, torch.Tensor) and out.shape == (5, 10)
    assert abs(_acc(r.model, digits[1]) - _acc(mlp, digits[1])) <= 0.01
    assert [x["status"] for x in r.record.layers] == ["quantized"] * 3
    ss.save(r.model, tmp_path / "q")
    assert (tmp_path / "q" / "model.onnx").exists()
    loaded = ss.load(tmp_path / "q")
    np.testing.assert_array_equal(loaded(digits[1].X[:16]).numpy(), r.model(digits[1].X[:16]).numpy())


def test_auto_measures_both_backends_and_records_them(mlp, digits):
    r = ss.quantize(mlp, ss.DynamicInt8(), calibration=digits[0])
    cand = r.record.candidates
    assert {"torch", "onnxruntime", "float"} <= set(cand)
    assert all(cand[n]["latency_ms"] > 0 for n in cand)
    fastest = min(("torch", "onnxruntime"), key=lambda n: cand[n]["latency_ms"])
    assert r.record.backend == fastest and "fastest measured" in r.record.backend_reason


def test_fallback_keeps_the_costliest_layer_float_to_meet_tolerance(digits):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model = ss.zoo.train(model, digits[0], epochs=3, seed=0).eval()
    with torch.no_grad():  # a dead input unit with a huge weight: its row scale rounds the useful weights to 0
        model[1].weight[0].zero_()
        model[1].bias[0] = -1.0
        model[3].weight[:, 0] = 1e4
    r = ss.quantize(model, ss.DynamicInt8(backend="torch"), data=digits[1], tolerance=0.005)
    rec = r.record
    assert rec.fallback_met and rec.tolerance == 0.005
    assert set(rec.sensitivity) == {"1", "3"}
    assert rec.quality_quantized >= rec.quality_float * (1 - 0.005)
    for name in rec.kept_float:
        assert rec.sensitivity[name] == max(rec.sensitivity.values())


def test_tiny_encoder_all_backends_keep_encode(tiny_encoder, sentences, snapshot):
    unchanged = snapshot(tiny_encoder)
    ref = tiny_encoder.encode(sentences[:8])
    for cfg in (ss.DynamicInt8(backend="onnxruntime"), ss.DynamicInt8(backend="torch"),
                ss.StaticInt8(smoothquant_alpha=0.5, backend="torch"), ss.WeightOnly(bits=4, group_size=32)):
        r = ss.quantize(tiny_encoder, cfg, calibration=sentences)
        emb = r.model.encode(sentences[:8])
        assert emb.shape == ref.shape
        cos = (emb * ref).sum(1)
        assert cos.min() > 0.97, (type(cfg).__name__, cos.min())
    assert unchanged()
    np.testing.assert_array_equal(tiny_encoder.encode(sentences[:8]), ref)  # export did not alter the caller's model


def test_ort_encoder_fuses_attention_and_round_trips(tiny_encoder, sentences, tmp_path):
    r = ss.quantize(tiny_encoder, ss.DynamicInt8(backend="onnxruntime"))
    assert isinstance(r.model, OrtSentenceEncoder)
    assert any(x["type"] == "Attention" and x["status"] == "quantized" for x in r.record.layers)
    ss.save(r.model, tmp_path / "enc")
    loaded = ss.load(tmp_path / "enc")
    np.testing.assert_array_equal(loaded.encode(sentences[:6]), r.model.encode(sentences[:6]))
    tokens = r.model.tokenize(sentences[:3])
    assert r.model(**tokens).shape == (3, 64)


def test_smoothquant_moves_outliers_into_weights(tiny_encoder, sentences):
    r = ss.quantize(tiny_encoder, ss.StaticInt8(smoothquant_alpha=0.5, backend="torch"), calibration=sentences)
    smoothed = [m.smooth for m in r.model.modules() if isinstance(m, QuantLinear) and m.smooth is not None]
    smoothed += [getattr(m, f"{g}_smooth") for m in r.model.modules() if isinstance(m, QuantBertLayer)
                 for g in ("qkv", "o", "fc1", "fc2")]
    assert smoothed and all(bool((s > 0).all()) and not torch.allclose(s, torch.ones_like(s)) for s in smoothed)
    assert any(rec.get("smoothquant") for rec in r.record.layers)


def test_encoder_measure_and_save_torch_int8(tiny_encoder, sentences, tmp_path):
    r = ss.quantize(tiny_encoder, ss.DynamicInt8(backend="torch"))
    ss.save(r.model, tmp_path / "t")
    loaded = ss.load(tmp_path / "t")
    np.testing.assert_allclose(loaded.encode(sentences[:4]), r.model.encode(sentences[:4]), atol=1e-6)
    ds = ss.datasets.load("stsb", split="test").subset(np.arange(20))
    c = ss.compare({"fp32": tiny_encoder, "int8": r.model}, ds, batch_size=16, runs=2, warmup=1)
    assert c.measurements["int8"].size_bytes < c.measurements["fp32"].size_bytes * 0.4


def test_auto_times_fused_and_unfused_encoder_graphs(tiny_encoder, sentences):
    r = ss.quantize(tiny_encoder, ss.DynamicInt8(), calibration=sentences)
    cand = r.record.candidates
    assert {"torch", "onnxruntime", "onnxruntime-unfused"} <= set(cand)
    assert r.record.backend == min(("torch", "onnxruntime", "onnxruntime-unfused"), key=lambda n: cand[n]["latency_ms"])
    unfused = ss.quantize(tiny_encoder, ss.DynamicInt8(backend="onnxruntime", optimize_graph=False))
    gathers = [x for x in unfused.record.layers if x["type"] == "Gather"]
    assert gathers and all(x["status"] == "quantized" for x in gathers)  # int8 embedding tables are recognised
