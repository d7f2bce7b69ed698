"""The fused int8 BERT layer: same function as the float layer and as per-Linear int8, on any padding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.quantize import QuantBertLayer, QuantLinear
from slimstack.quantize.backends.torch._transformer import fused_available

needs_fused = pytest.mark.skipif(not fused_available(), reason="the fused layer needs torch's oneDNN int8 GEMM")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@needs_fused
@pytest.mark.parametrize("config", [ss.DynamicInt8(backend="torch"),
                                    ss.StaticInt8(backend="torch", observer="mse")], ids=["dynamic", "static"])
def test_fused_layers_replace_every_bert_layer_and_match_float(tiny_encoder, sentences, config):
    kw = {"calibration": sentences} if isinstance(config, ss.StaticInt8) else {}
    r = ss.quantize(tiny_encoder, config, **kw)
    layers = r.model.model.encoder.layer
    assert all(isinstance(layer, QuantBertLayer) for layer in layers) and len(layers) == 2
    assert all(layer.qkv_weight.dtype == torch.int8 and layer.fc2_weight.dtype == torch.int8 for layer in layers)
    fused_recs = [x for x in r.record.layers if x.get("as", "").startswith("QuantBertLayer")]
    assert len(fused_recs) == 12 and all(x["kernel"] == "onednn-fused" for x in fused_recs)  # 6 Linears x 2 layers
    ref, out = tiny_encoder.encode(sentences), r.model.encode(sentences)
    assert _cos(ref, out).min() > 0.99
    # the same int8 arithmetic run Linear by Linear gives the same embeddings up to float summation order
    unfused = ss.quantize(tiny_encoder, config.replace(fuse_layers=False), **kw).model
    assert not any(isinstance(m, QuantBertLayer) for m in unfused.modules())
    assert _cos(unfused.encode(sentences), out).min() > 0.999


@needs_fused
def test_fused_static_layer_ignores_padding(tiny_encoder, sentences):
    """A sentence embedded alone or beside a much longer one gets the same vector (static ranges)."""
    q = ss.quantize(tiny_encoder, ss.StaticInt8(backend="torch", observer="percentile"), calibration=sentences).model
    short, long = "A dog runs.", " ".join(sentences[:6])
    alone = q.encode([short])
    padded = q.encode([short, long])[:1]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


@needs_fused
def test_fused_model_saves_loads_and_leaves_the_input_alone(tiny_encoder, sentences, tmp_path):
    before = copy.deepcopy(tiny_encoder.state_dict())
    r = ss.quantize(tiny_encoder, ss.StaticInt8(backend="torch"), calibration=sentences)
    assert all(torch.equal(v, tiny_encoder.state_dict()[k]) for k, v in before.items())
    ss.save(r.model, tmp_path / "q")
    loaded = ss.load(tmp_path / "q")
    assert isinstance(loaded.model.encoder.layer[0], QuantBertLayer)
    np.testing.assert_allclose(loaded.encode(sentences[:8]), r.model.encode(sentences[:8]), atol=1e-6)
    m = ss.measure(loaded, ss.datasets.load("stsb", split="test").subset(np.arange(10)), runs=1, warmup=0)
    assert m.params == sum(p.numel() for p in tiny_encoder.parameters())  # every weight still counted once


@needs_fused
def test_a_layer_kept_in_float_is_not_fused(tiny_encoder, sentences):
    cfg = ss.DynamicInt8(backend="torch", skip=("encoder.layer.1.intermediate.dense",))
    r = ss.quantize(tiny_encoder, cfg)
    layers = r.model.model.encoder.layer
    assert isinstance(layers[0], QuantBertLayer) and not isinstance(layers[1], QuantBertLayer)
    assert isinstance(layers[1].intermediate.dense, torch.nn.Linear)
    assert isinstance(layers[1].output.dense, QuantLinear)
    assert any(x["name"].endswith("layer.1.intermediate.dense") and x["status"] == "float" for x in r.record.layers)


def test_int4_embedding_tables_halve_the_tables(tiny_encoder, sentences, tmp_path):
    from slimstack.quantize import WeightOnlyEmbedding

    q8 = ss.quantize(tiny_encoder, ss.StaticInt8(backend="torch"), calibration=sentences)
    q4 = ss.quantize(tiny_encoder, ss.StaticInt8(embedding_bits=4), calibration=sentences)
    assert q4.record.backend == "torch" and any("torch backend only" in n for n in q4.record.notes)
    word = q4.model.model.embeddings.word_embeddings
    assert isinstance(word, WeightOnlyEmbedding) and word.bits == 4 and word.group_size == 32
    assert word.weight_q.dtype == torch.uint8 and word.weight_q.shape == (30522, 32)  # two values per byte
    assert {x["bits"] for x in q4.record.layers if x.get("as") == "WeightOnlyEmbedding"} == {4}
    for name, r in (("q8", q8), ("q4", q4)):
        ss.save(r.model, tmp_path / name)
    size = {n: sum(f.stat().st_size for f in (tmp_path / n).rglob("*") if f.is_file()) for n in ("q8", "q4")}
    # the word table is 30522 x 64 of the tiny model's ~2.1M weights: int4 saves ~0.85 MB of ~2.9 MB
    assert size["q4"] < size["q8"] - 800_000
    assert _cos(q4.model.encode(sentences), tiny_encoder.encode(sentences)).min() > 0.98


def test_int4_embedding_tables_are_refused_on_onnxruntime(tiny_encoder):
    with pytest.raises(ss.errors.ConfigError, match="embedding_bits=4"):
        ss.quantize(tiny_encoder, ss.DynamicInt8(backend="onnxruntime", embedding_bits=4))
    with pytest.raises(ss.errors.ConfigError, match="embedding_bits=6 must be 8 .*, 4 .* or .mixed."):
        ss.DynamicInt8(embedding_bits=6)


def test_fused_layer_runs_wherever_the_int8_kernel_does():
    """The probe of the post-ops (uint8 GELU output, residual add) agrees with the plain int8 GEMM's."""
    from slimstack.quantize.backends.torch import int8_kernel

    assert fused_available() == (int8_kernel() == "onednn")


def test_measure_counts_the_int8_gemms_as_macs(tiny_encoder, sentences):
    """torch's FLOP counter learns oneDNN's int8 GEMM, so int8 models report their real MACs."""
    ds = ss.datasets.load("stsb", split="test").subset(np.arange(8))
    unfused = ss.quantize(tiny_encoder, ss.DynamicInt8(backend="torch", fuse_layers=False)).model
    c = ss.compare({"fp32": tiny_encoder, "int8": unfused}, ds, batch_size=16, runs=1, warmup=0)
    assert c.measurements["int8"].macs == c.measurements["fp32"].macs > 0
    if fused_available():
        fused = ss.quantize(tiny_encoder, ss.DynamicInt8(backend="torch")).model
        macs = ss.measure(fused, ds, batch_size=16, runs=1, warmup=0).macs
        # the same GEMMs, plus the attention matmuls the counter does not see inside torch's CPU flash kernel
        assert c.measurements["fp32"].macs <= macs <= 1.1 * c.measurements["fp32"].macs


def test_mixed_embedding_tables_keep_seen_rows_in_int8(tiny_encoder, sentences, tmp_path):
    from slimstack.quantize import MixedEmbedding
    from slimstack.quantize.backends.torch._kernels import quantize_groups

    r = ss.quantize(tiny_encoder, ss.StaticInt8(backend="torch", embedding_bits="mixed"), calibration=sentences)
    word = r.model.model.embeddings.word_embeddings
    assert isinstance(word, MixedEmbedding)
    seen = torch.unique(tiny_encoder.tokenize(sentences)["input_ids"])
    assert word.n_hot == len(seen) and bool((word.slot[seen] >= 0).all())
    rec = next(x for x in r.record.layers if x["name"].endswith("word_embeddings"))
    assert rec["bits"] == "mixed" and rec["int8_rows"] == len(seen) and rec["int4_rows"] == 30522 - len(seen)
    # seen rows read back exactly as int8 per-row quantization, unseen ones as int4 groups of 32
    w = tiny_encoder.model.embeddings.word_embeddings.weight.detach()
    q8, s8 = quantize_groups(w[seen], 8, 64)
    np.testing.assert_allclose(word(seen), q8.float() * s8.float(), rtol=1e-6)
    unseen = torch.tensor([i for i in range(1000, 1400) if i not in set(seen.tolist())])
    q4, s4 = quantize_groups(w[unseen], 4, 32)
    np.testing.assert_allclose(word(unseen), (q4.float().reshape(len(unseen), -1, 32) * s4.float()[..., None])
                               .reshape(len(unseen), 64), rtol=1e-6)
    assert torch.equal(word.weight[seen], word(seen))
    ss.save(r.model, tmp_path / "m")
    loaded = ss.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.encode(sentences[:6]), r.model.encode(sentences[:6]), atol=1e-6)
    with pytest.raises(ss.errors.DataError, match="embedding_bits='mixed'.*calibration="):
        ss.quantize(tiny_encoder, ss.DynamicInt8(backend="torch", embedding_bits="mixed"))
