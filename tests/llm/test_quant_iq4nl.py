"""IQ4_NL (non-uniform 4-bit grid), the anchored scale search, and the measured per-tensor sensitivity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.quantize.backends.llamacpp import QTensor
from slimstack.quantize.backends.llamacpp._grids import GRIDS, IQ4NL_VALUES, pack
from slimstack.quantize.backends.llamacpp._gptq import gptq, output_error
from slimstack.quantize.backends.llamacpp._plan import kld, ladder
from slimstack.quantize.backends.llamacpp._sensitivity import Probe, tensor_sensitivity

from .conftest import TEXT
from .test_quant_lm import CALIB, _one_thread, quant_llama  # noqa: F401  (fixture)

gguf = pytest.importorskip("gguf")


def _layer(cols=192, rows=40, n=3000, seed=0, massive=True):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / 12
    x = torch.randn(n, cols, generator=g) @ mix + 0.3 * torch.randn(n, cols, generator=g)
    if massive:  # one channel with activations ~300x the others, as SmolLM2's down projections have
        x[:, 37] *= 300
    return torch.randn(rows, cols, generator=g) * 0.1, x.T @ x, n


def test_quant_iq4nl_blocks_decode_bit_exactly_and_beat_q4_0_at_equal_bits():
    from gguf import quants

    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(2))
    w[0] = 0.0  # an all-zero row: scale 0
    grid = GRIDS["IQ4_NL"]
    assert grid.bpw == GRIDS["Q4_0"].bpw == 4.5 and grid.levels == IQ4NL_VALUES
    for search in (False, True):
        q, d, m = grid.round(w, 32, search=search)
        raw = pack(grid, q, d, m)
        assert raw.shape == (16, 8 * 18)  # 2 bytes of scale + 16 of nibbles per 32 weights
        back = quants.dequantize(raw, gguf.GGMLQuantizationType.IQ4_NL)
        np.testing.assert_array_equal(back, grid.dequantize(q, d, m).numpy())
        assert np.all(back[0] == 0)
    err = float((grid.dequantize(*grid.round(w, 32, search=True)) - w).pow(2).mean())
    err_q4 = float((GRIDS["Q4_0"].dequantize(*GRIDS["Q4_0"].round(w, 32, search=True)) - w).pow(2).mean())
    assert err < 0.9 * err_q4, (err, err_q4)  # Gaussian weights: the non-uniform levels fit better


@pytest.mark.parametrize("fmt", ["Q4_0", "Q5_0", "IQ4_NL", "Q8_0"])
def test_quant_anchored_search_keeps_the_weight_on_a_massive_channel(fmt):
    w, h, n = _layer()
    w[:, 37] = 0.013  # small against the block's range: no scale near the plain rule holds it
    imp = torch.diag(h).numpy().copy()
    grid = GRIDS[fmt]
    q, d, m = grid.round(w, 32, imp=imp, search=True)
    got = grid.dequantize(q, d, m)
    assert float((got[:, 37] - w[:, 37]).abs().max()) < 1e-4  # within 1 %: on a code, up to the refit scale
    plain = grid.dequantize(*grid.round(w, 32))
    if fmt != "Q8_0":  # 4/5 bits: the plain rule's nearest code is 0 or a whole step away
        assert float((plain[:, 37] - w[:, 37]).abs().mean()) > 30 * float((got[:, 37] - w[:, 37]).abs().mean())
    assert output_error(w, got, h, n) < 0.1 * output_error(w, plain, h, n), fmt


def test_quant_gptq_on_iq4nl_beats_round_to_nearest_and_packs_its_codes():
    w, h, n = _layer(massive=False)
    grid = GRIDS["IQ4_NL"]
    q, d, m, ex = gptq(w, h, grid, 32)
    assert ex is None and q.min() >= 0 and q.max() <= 15
    e_gptq = output_error(w, grid.dequantize(q, d, m), h, n)
    e_rtn = output_error(w, grid.dequantize(*grid.round(w, 32, imp=torch.diag(h).numpy().copy(), search=True)), h, n)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)
    back = gguf.quants.dequantize(pack(grid, q, d, m), gguf.GGMLQuantizationType.IQ4_NL)
    np.testing.assert_array_equal(back, grid.dequantize(q, d, m).numpy())


def test_quant_iq4nl_config_ladders_and_torch_refusal(_one_thread):
    assert ladder("IQ4_NL", 4, 576) == ["IQ4_NL", "Q5_0", "Q8_0"]
    assert ladder("IQ4_NL", 4, 1536, kquants=True) == ["IQ4_NL", "Q5_K", "Q6_K", "Q8_0"]
    with pytest.raises(ss.errors.ConfigError, match="Q8_0 is the 8-bit"):
        ss.WeightOnly(bits=8, format="IQ4_NL")
    lm = quant_llama()
    with pytest.raises(ss.errors.ConfigError, match="non-uniform levels.*backend='llamacpp'"):
        ss.quantize(lm, ss.WeightOnly(bits=4, group_size=32, format="IQ4_NL", backend="torch"), calibration=CALIB)


def test_quant_probe_reruns_only_the_layers_after_the_change():
    lm = quant_llama()
    ws = [torch.tensor(lm.tokenize(TEXT[i:i + 300])[:48]) for i in (0, 200)]
    probe = Probe(lm.model, ws, context=16)
    name = "model.layers.1.mlp.down_proj.weight"
    w = lm.model.get_parameter(name).detach().clone()
    assert probe.kld({}) == 0.0 and probe.kld({name: w}) == 0.0
    noisy = w + 0.05 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0))
    partial = probe.kld({name: noisy})
    with torch.no_grad():  # the whole model with the noisy tensor, scored on the same positions
        lm.model.get_parameter(name).copy_(noisy)
        full = np.mean([float((r.exp() * (r - torch.log_softmax(lm.model(input_ids=x[None]).logits[0, 16:], -1)))
                              .sum(-1).mean()) for x, r in zip(ws, probe.ref)])
        lm.model.get_parameter(name).copy_(w)
    assert partial > 1e-5 and partial == pytest.approx(full, rel=1e-5)
    assert torch.equal(lm.model.get_parameter(name), w)  # restored
    assert all(type(b).__name__ == "LlamaDecoderLayer" for b in probe.blocks)  # replay stubs removed


def test_quant_tensor_sensitivity_shares_each_layers_measured_kld():
    lm = quant_llama()
    ws = [torch.tensor(lm.tokenize(TEXT[i:i + 300])[:48]) for i in (0, 200)]
    names = [n for n, p in lm.model.named_parameters() if p.ndim == 2]
    g = torch.Generator().manual_seed(1)
    vals = {n: p.detach() + 0.02 * torch.randn(p.shape, generator=g) for n, p in lm.model.named_parameters()
            if p.ndim == 2}
    vals["model.layers.0.self_attn.v_proj.weight"] += 0.2 * torch.randn(vals["model.layers.0.self_attn.v_proj.weight"].shape, generator=g)
    per, units = tensor_sensitivity(lm.model, names, vals, ws, context=16)
    assert set(units) == {"model.embed_tokens.weight", "model.layers.0", "model.layers.1"}
    for u in ("model.layers.0", "model.layers.1"):
        assert sum(v for k, v in per.items() if k.startswith(u + ".")) == pytest.approx(units[u], rel=1e-6)
    layer0 = {k: v for k, v in per.items() if k.startswith("model.layers.0.")}
    assert max(layer0, key=layer0.get) == "model.layers.0.self_attn.v_proj.weight"  # the one pushed hardest


llama_cpp = pytest.importorskip("llama_cpp")


def test_quant_llamacpp_runs_slimstacks_iq4nl_codes(tmp_path, _one_thread):
    from .test_quant_kquants import assert_llamacpp_runs_the_codes

    lm = quant_llama()
    tensors = {}
    for name, p in lm.model.named_parameters():
        if p.ndim == 2 and "layers" in name:
            tensors[name] = QTensor("IQ4_NL", *GRIDS["IQ4_NL"].round(p.detach(), 32, search=True))
    types = assert_llamacpp_runs_the_codes(lm, tensors, tmp_path / "iq4.gguf")
    assert types["blk.0.attn_q.weight"] == "IQ4_NL" and types["blk.1.ffn_down.weight"] == "IQ4_NL"


def test_quant_smoothing_preserves_the_function_and_its_hessians():
    from slimstack.quantize.backends.llamacpp._smooth import smooth
    from slimstack.quantize.backends.llamacpp._gptq import collect_hessians, linear_names

    lm = quant_llama()
    hf = lm.model
    ws = [torch.tensor(lm.tokenize(TEXT[i:i + 300])[:48]) for i in (0, 200)]
    names = linear_names(hf)
    hess, n = collect_hessians(hf, ws, names)
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    out, new = smooth(hf, hess, n, 0.5)
    assert all(torch.equal(before[k], v) for k, v in hf.state_dict().items())  # the input model is untouched
    changed = [k for k, v in out.state_dict().items() if not torch.allclose(v, before[k])]
    assert any("input_layernorm" in k for k in changed) and any("v_proj" in k for k in changed) \
        and any("up_proj" in k for k in changed) and "model.embed_tokens.weight" not in changed
    with torch.no_grad():
        for x in ws:
            a, b = hf(input_ids=x[None]).logits, out(input_ids=x[None]).logits
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), float((a - b).abs().max())
    again, _ = collect_hessians(out, ws, names)  # the transformed Hessians are the scaled inputs' X^T X
    for k in names:
        assert torch.allclose(new[k], again[k], rtol=1e-3, atol=1e-3 * float(again[k].abs().max())), k
    assert new["model.layers.0.self_attn.q_proj"] is new["model.layers.0.self_attn.v_proj"]  # still shared


def test_quant_smooth_config_is_checked_and_recorded(_one_thread, tmp_path):
    with pytest.raises(ss.errors.ConfigError, match=r"smooth=1.5 must be a number in \[0, 1\)"):
        ss.WeightOnly(bits=8, smooth=1.5)
    from .conftest import make_hf_model
    from slimstack.llm import CausalLM

    gpt2 = CausalLM(*make_hf_model("gpt2"), name="tiny-gpt2")
    with pytest.raises(ss.errors.ConfigError, match="smooth=0.5.*Llama-family.*smooth=0"):
        ss.quantize(gpt2, ss.WeightOnly(bits=8, group_size=32, backend="torch", smooth=0.5), calibration=CALIB)
    lm = quant_llama()
    r = ss.quantize(lm, ss.WeightOnly(bits=8, group_size=32, backend="llamacpp", smooth=0.5), calibration=CALIB,
                    threads=1)
    assert any("SmoothQuant, alpha=0.5" in x for x in r.record.notes)
    ids = [int(i) for i in lm.tokenize(TEXT[:300])]
    with torch.no_grad():
        ref = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0], -1).numpy()
    assert kld(ref, r.model.logprobs_ids(ids)) < 0.01  # the smoothed int8 file still computes the model
    r.model.close()
