"""WeightOnly on causal LMs: GPTQ against round-to-nearest, group-size errors, mixed precision, torch fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.errors import ConfigError, DataError
from slimstack.quantize.backends.llamacpp import _lm_quantize
from slimstack.quantize.backends.llamacpp._grids import GRIDS
from slimstack.quantize.backends.llamacpp._gptq import gptq, output_error
from slimstack.quantize.backends.llamacpp._plan import kld

from .conftest import TEXT, make_tokenizer

CALIB = [TEXT, TEXT.upper(), TEXT[::-1]]


def _q(*args, **kw):
    return ss.quantize(*args, threads=1, **kw)  # one thread: on a loaded 2-core machine two spin-wait


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def quant_llama(seed: int = 0):
    """Two Llama layers, hidden 64 (GQA 4/2 heads), with weights large enough that 4-bit rounding shows."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from slimstack.llm import CausalLM

    tok = make_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, eos_token_id=0, pad_token_id=0, bos_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.15)
    return CausalLM(model, tok, name="quant-llama")


@pytest.fixture()
def lm(monkeypatch):
    return quant_llama()


def _kld(a, b, text=TEXT[:400]) -> float:
    _, ra = a.logprobs(text)
    _, rb = b.logprobs(text)
    return kld(ra, rb)


@pytest.mark.parametrize("fmt,group", [("Q4_0", 32), ("Q4_0", 64), ("Q4_1", 96), ("Q8_0", 32)])
def test_quant_gptq_lowers_layer_output_error_vs_round_to_nearest(fmt, group):
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(192, 192, generator=g) / 14
    x = torch.randn(2048, 192, generator=g) @ mix + 0.3 * torch.randn(2048, 192, generator=g)
    w = torch.randn(48, 192, generator=g)
    h = x.T @ x
    grid = GRIDS[fmt]
    q, d, m, _ = gptq(w, h, grid, group)
    qr, dr, mr = grid.round(w, group)
    e_gptq = output_error(w, grid.dequantize(q, d, m), h, len(x))
    e_rtn = output_error(w, grid.dequantize(qr, dr, mr), h, len(x))
    assert q.min() >= grid.qmin and q.max() <= grid.qmax and d.shape == (48, 192 // group)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)


def test_quant_gptq_beats_rtn_on_the_model_and_leaves_input_alone(lm):
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    rtn = _q(lm, ss.WeightOnly(bits=4, group_size=32, backend="torch", method="rtn"), calibration=CALIB)
    gq = _q(lm, ss.WeightOnly(bits=4, group_size=32, backend="torch"), calibration=CALIB)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert type(gq.model) is type(lm) and isinstance(gq.model.generate("The quick", 4), str)
    k_rtn, k_gptq = _kld(lm, rtn.model), _kld(lm, gq.model)
    assert 0 < k_gptq < 0.8 * k_rtn, (k_gptq, k_rtn)
    rec = gq.record
    assert rec.backend == "torch" and len(rec.quantized) == 14
    assert rec.kept_float == {"model.embed_tokens": pytest.approx(rec.kept_float["model.embed_tokens"])}
    assert {r["format"] for r in rec.layers if r["status"] == "quantized"} == {"Q4_0"}


@pytest.mark.parametrize("kw,match", [
    (dict(group_size=128, backend="torch"), r"group_size=128 does not divide .*'model.layers.0.self_attn.q_proj' "
                                            r"\(in_features=64\).*fit every layer \(inputs \[64, 192\]\): \[32, 64\]"),
    (dict(group_size=96, backend="torch"), r"group_size=96 .*in_features=64.*\[32, 64\]"),
    (dict(group_size=64, backend="llamacpp"), r"group_size=64 with backend='llamacpp'.*32"),
])
def test_quant_group_size_that_does_not_fit_names_layer_and_sizes(lm, kw, match, monkeypatch):
    monkeypatch.setattr(_lm_quantize, "llama_cpp_available", lambda: (True, ""))
    with pytest.raises(ConfigError, match=match):
        _q(lm, ss.WeightOnly(bits=4, **kw), calibration=CALIB)


@pytest.mark.parametrize("make,match", [
    (lambda: ss.WeightOnly(bits=4, bits_per_weight=3.0), r"bits_per_weight=3.0.*\[4.5, 8.5\]"),
    (lambda: ss.WeightOnly(bits=8, format="Q4_0"), r"bits=8, format='Q4_0'"),
    (lambda: ss.WeightOnly(bits=4, format="Q3_K"), r"format='Q3_K'.*'Q4_0'"),
    (lambda: ss.DynamicInt8(backend="llamacpp"), r"backend='llamacpp' is not offered"),
])
def test_quant_lm_config_errors(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_quant_lm_needs_calibration_text(lm):
    with pytest.raises(DataError, match="calibration="):
        _q(lm, ss.WeightOnly(bits=4, group_size=32, backend="torch"))
    with pytest.raises(DataError, match="empty"):
        _q(lm, ss.WeightOnly(bits=4, group_size=32, backend="torch"), calibration=["", "  "])
    with pytest.raises(ConfigError, match="WeightOnly"):
        _q(lm, ss.DynamicInt8(), calibration=CALIB)


def test_quant_falls_back_to_torch_and_says_so_when_llama_cpp_is_missing(lm, monkeypatch):
    monkeypatch.setattr(_lm_quantize, "llama_cpp_available",
                        lambda: (False, "llama-cpp-python is not importable (ImportError: no module)"))
    r = _q(lm, ss.WeightOnly(bits=8, group_size=32), calibration=CALIB)
    assert r.record.backend == "torch"
    assert any("fell back to torch" in n and "not importable" in n for n in r.record.notes)
    assert _kld(lm, r.model) < 0.01
    with pytest.raises(ss.errors.ModelError, match="not importable"):
        _q(lm, ss.WeightOnly(bits=8, group_size=32, backend="llamacpp"), calibration=CALIB)


def test_quant_mixed_precision_spends_the_budget_on_measured_sensitivity(lm):
    # 5.2 bits: not every tensor can leave Q4_0 (4.5 bits), so the measured sensitivity decides which do
    r = _q(lm, ss.WeightOnly(bits=4, group_size=32, backend="torch", bits_per_weight=5.2),
                    calibration=CALIB)
    params = dict(lm.model.named_parameters())
    q = [x for x in r.record.layers if x["status"] == "quantized"]
    n = {x["name"]: params[x["name"] + ".weight"].numel() for x in q}
    bpw = sum(n[x["name"]] * x["bits_per_weight"] for x in q) / sum(n.values())
    assert 4.7 < bpw <= 5.2
    assert {x["format"] for x in q} > {"Q4_0"}
    assert set(r.record.sensitivity) == {"model.layers.0", "model.layers.1"}
    plain = _q(lm, ss.WeightOnly(bits=4, group_size=32, backend="torch"), calibration=CALIB)
    assert _kld(lm, r.model) < _kld(lm, plain.model)


def test_quant_kld_fallback_moves_sensitive_layers_to_8_bits(lm):
    r = _q(lm, ss.WeightOnly(bits=4, group_size=32, backend="torch"), calibration=CALIB,
                    data=[TEXT[100:500]], tolerance=0.02)
    rec = r.record
    assert rec.quality_metric == "kld" and rec.fallback_met is True and rec.quality_quantized <= 0.02
    formats = {x["name"]: x["format"] for x in rec.layers if x["status"] == "quantized"}
    worst = max(rec.sensitivity, key=rec.sensitivity.get)
    assert all(f == "Q8_0" for k, f in formats.items() if k.startswith(worst + "."))


def test_quant_lm_is_deterministic(lm):
    a = _q(lm, ss.WeightOnly(bits=4, group_size=64, backend="torch"), calibration=CALIB, seed=3)
    b = _q(quant_llama(), ss.WeightOnly(bits=4, group_size=64, backend="torch"), calibration=CALIB, seed=3)
    sa, sb = a.model.model.state_dict(), b.model.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(a.model.logprobs(TEXT[:100])[1], b.model.logprobs(TEXT[:100])[1])


@pytest.mark.parametrize("backend", ["torch", "llamacpp"])
def test_quant_lm_default_group_size_fits_llama_cpp_blocks(lm, backend, monkeypatch):
    """WeightOnly() with no group_size quantizes an LM whose inputs (64, 192) 128 does not divide."""
    if backend == "llamacpp" and not _lm_quantize.llama_cpp_available()[0]:
        pytest.skip("llama-cpp-python is not installed")
    cfg = ss.WeightOnly(bits=4, backend=backend)
    assert cfg.group_size is None
    r = _q(lm, cfg, calibration=CALIB)
    assert r.record.backend == backend
    projections = [x for x in r.record.layers if ".layers." in x["name"]]
    assert len(projections) == 14 and all(x["status"] == "quantized" for x in projections)  # 2 x 7, none float
    assert 0 < _kld(lm, r.model) < 0.5
    assert ss.WeightOnly().group_size is None and ss.WeightOnly(group_size=64).group_size == 64
