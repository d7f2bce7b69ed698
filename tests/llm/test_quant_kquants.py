"""K-quant grids (Q4_K/Q5_K/Q6_K), the scale search and the byte budget of the llama.cpp mixed precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.quantize.backends.llamacpp import LlamaCppLM, QTensor, write_gguf
from slimstack.quantize.backends.llamacpp._grids import GRIDS
from slimstack.quantize.backends.llamacpp._gptq import gptq, output_error
from slimstack.quantize.backends.llamacpp._kquants import K_GRIDS, pack_k
from slimstack.quantize.backends.llamacpp._plan import kld, ladder

from .conftest import TEXT, make_tokenizer
from .test_quant_lm import CALIB, _one_thread  # noqa: F401  (fixture)

gguf = pytest.importorskip("gguf")


def _weights(rows=12, cols=512, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * torch.rand(rows, 1, generator=g)
    w[0] = 0.0  # an all-zero row: scales 0, codes 0
    w[1] = w[1].abs() + 0.5  # a row with no negative value: minimum clamped to 0 on the affine grids
    w[2, 7] = 25.0  # an outlier
    return w


@pytest.mark.parametrize("fmt", sorted(K_GRIDS))
def test_quant_kquant_blocks_decode_bit_exactly_in_gguf_py(fmt):
    from gguf import quants

    grid = K_GRIDS[fmt]
    w = _weights()
    q, d, m, ex = grid.round(w)
    raw = pack_k(grid, q, ex)
    t = gguf.GGMLQuantizationType[fmt]
    assert raw.shape == (12, 2 * gguf.GGML_QUANT_SIZES[t][1])
    assert q.min() >= grid.qmin and q.max() <= grid.qmax
    back = quants.dequantize(raw, t)
    np.testing.assert_array_equal(back, grid.dequantize(q, d, m).numpy())
    assert np.all(back[0] == 0)
    err = float(((back - w.numpy()) ** 2).mean())
    assert err < {"Q4_K": 0.02, "Q5_K": 0.005, "Q6_K": 0.0015}[fmt], err


def test_quant_kquant_errors_shrink_up_the_ladder():
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    errs = [float((K_GRIDS[f].dequantize(*K_GRIDS[f].round(w)[:3]) - w).pow(2).mean()) for f in ("Q4_K", "Q5_K", "Q6_K")]
    q41 = GRIDS["Q4_1"].dequantize(*GRIDS["Q4_1"].round(w, 32))
    assert errs[0] < float((q41 - w).pow(2).mean())  # searched affine sub-blocks beat Q4_1's min/max at equal bits
    assert errs[0] > 2.5 * errs[1] > 2.5 * 2.5 * errs[2] > 0, errs
    assert ladder("Q4_0", 4, 1536, kquants=True) == ["Q4_K", "Q5_K", "Q6_K", "Q8_0"]
    assert ladder("Q4_0", 4, 576, kquants=True) == ["Q4_0", "Q5_0", "Q8_0"]  # 576 is not a multiple of 256
    assert ladder("Q4_0", 4, 1536, kquants=False) == ["Q4_0", "Q5_0", "Q8_0"]


def _layer(cols=256, rows=48, n=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / 14
    x = torch.randn(n, cols, generator=g) @ mix + 0.3 * torch.randn(n, cols, generator=g)
    x[:, :8] *= 6  # a few loud input channels, as LLM activations have
    return torch.randn(rows, cols, generator=g), x.T @ x, n


@pytest.mark.parametrize("fmt", sorted(K_GRIDS))
def test_quant_gptq_on_kquant_grids_beats_round_to_nearest(fmt):
    w, h, n = _layer()
    grid = K_GRIDS[fmt]
    q, d, m, ex = gptq(w, h, grid, 32)
    qr, dr, mr, _ = grid.round(w, torch.diag(h).numpy().copy())
    e_gptq = output_error(w, grid.dequantize(q, d, m), h, n)
    e_rtn = output_error(w, grid.dequantize(qr, dr, mr), h, n)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)
    # the GPTQ codes pack and decode to the values GPTQ chose
    back = gguf.quants.dequantize(pack_k(grid, q, ex), gguf.GGMLQuantizationType[fmt])
    np.testing.assert_array_equal(back, grid.dequantize(q, d, m).numpy())


def test_quant_scale_search_lowers_weighted_error_vs_the_plain_rule():
    w, h, n = _layer(cols=192)
    imp = torch.diag(h).numpy().copy()
    for fmt in ("Q4_0", "Q5_0"):
        grid = GRIDS[fmt]
        plain = output_error(w, grid.dequantize(*grid.round(w, 32)), h, n)
        searched = output_error(w, grid.dequantize(*grid.round(w, 32, imp=imp, search=True)), h, n)
        assert searched < 0.9 * plain, (fmt, searched, plain)


def _kllama():
    """A tiny Llama whose MLP down projection reads 256 inputs, so it can take K-quants."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from slimstack.llm import CausalLM

    tok = make_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, eos_token_id=0, pad_token_id=0, bos_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.15)
    return CausalLM(model, tok, name="kquant-llama")


llama_cpp = pytest.importorskip("llama_cpp")


def assert_llamacpp_runs_the_codes(lm, tensors: dict, path) -> dict[str, str]:
    """Write ``tensors`` (name -> QTensor) into a GGUF file at ``path``; llama.cpp's log-probabilities must match
    torch run on the same dequantized values far better than the float model's. Returns the file's tensor types."""
    ids = [int(i) for i in lm.tokenize(TEXT[:300])]
    deq = lm.model.__class__(lm.model.config).eval()
    deq.load_state_dict(lm.model.state_dict())
    for name, qt in tensors.items():
        deq.get_parameter(name).data.copy_(qt.dequantize())
    path = write_gguf(lm.model, lm.tokenizer, path, tensors, pre="gpt-2")
    lp = LlamaCppLM(path, n_threads=1).logprobs_ids(ids)
    with torch.no_grad():
        ref = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0], -1).numpy()
        own = torch.log_softmax(deq(input_ids=torch.tensor([ids])).logits[0], -1).numpy()
    assert kld(own, lp) < 0.2 * kld(ref, lp), (kld(own, lp), kld(ref, lp))
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def test_quant_llamacpp_runs_slimstacks_kquant_codes(tmp_path):
    lm = _kllama()
    tensors = {}
    for i, fmt in enumerate(("Q4_K", "Q6_K")):
        name = f"model.layers.{i}.mlp.down_proj.weight"
        q, d, m, ex = K_GRIDS[fmt].round(lm.model.get_parameter(name).detach())
        tensors[name] = QTensor(fmt, q, d, m, ex)
    types = assert_llamacpp_runs_the_codes(lm, tensors, tmp_path / "k.gguf")
    assert types["blk.0.ffn_down.weight"] == "Q4_K" and types["blk.1.ffn_down.weight"] == "Q6_K"


def test_quant_budget_mix_uses_kquants_and_lands_within_the_byte_budget(tmp_path):
    lm = _kllama()
    hf = lm.model
    n_q = sum(p.numel() for p in hf.parameters() if p.ndim == 2)
    f32 = write_gguf(hf, lm.tokenizer, tmp_path / "f32.gguf", pre="gpt-2").stat().st_size
    overhead = f32 - 4 * n_q + 64e3  # what the benchmark reserves for norms, tokenizer, record and alignment
    for bpw in (5.0, 6.0):
        r = ss.quantize(lm, ss.WeightOnly(bits=4, group_size=32, backend="llamacpp", bits_per_weight=bpw),
                        calibration=CALIB, threads=1)
        fmts = {x["name"]: x["format"] for x in r.record.layers}
        assert {fmts[f"model.layers.{i}.mlp.down_proj"] for i in range(2)} <= {"Q4_K", "Q5_K", "Q6_K", "Q8_0"}
        assert fmts["model.layers.0.self_attn.q_proj"] in ("Q4_0", "Q5_0", "Q8_0")
        bits = sum(hf.get_parameter(n + ".weight").numel() * x for n, x in
                   ((x["name"], x["bits_per_weight"]) for x in r.record.layers))
        assert bits <= bpw * n_q + 1e-6  # the average over every quantized weight, embedding included
        size = r.model.file_bytes
        assert size <= overhead + bpw * n_q / 8, (size, overhead + bpw * n_q / 8)
        assert size > overhead - 64e3 + (bpw - 1.0) * n_q / 8  # the budget is spent, not left unused
        r.model.close()
