"""slimstack's GGUF writer: its block bytes, and llama.cpp running the file it writes (skipped without llama.cpp)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.quantize.backends.llamacpp import LlamaCppLM, QTensor, write_gguf
from slimstack.quantize.backends.llamacpp._grids import GRIDS, pack
from slimstack.quantize.backends.llamacpp._plan import kld

from .conftest import TEXT
from .test_quant_lm import CALIB, _one_thread, quant_llama  # noqa: F401  (fixture)

gguf = pytest.importorskip("gguf")


@pytest.mark.parametrize("fmt", sorted(GRIDS))
def test_quant_packed_blocks_decode_to_slimstacks_values_in_gguf_py(fmt):
    from gguf import quants

    w = torch.randn(6, 96, generator=torch.Generator().manual_seed(1))
    grid = GRIDS[fmt]
    q, d, m = grid.round(w, 32)
    raw = pack(grid, q, d, m)
    assert raw.shape == (6, 3 * gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[fmt]][1])
    back = quants.dequantize(raw, gguf.GGMLQuantizationType[fmt])
    np.testing.assert_array_equal(back, grid.dequantize(q, d, m).numpy())
    if fmt == "IQ4_NL":  # gguf-py dequantizes IQ4_NL but has no quantizer for it to compare with
        assert set(np.unique(back / np.repeat(d.numpy(), 32, axis=1))) <= {float(v) for v in grid.levels}
        return
    # round-to-nearest with the same scale rule lands on the same bytes as gguf-py's reference quantizer
    assert (raw == quants.quantize(w.numpy(), gguf.GGMLQuantizationType[fmt])).mean() > 0.98  # search=False: plain rule


def test_quant_writer_refuses_non_llama_architectures():
    from .conftest import make_hf_model

    model, tok = make_hf_model("gpt2")
    with pytest.raises(ss.errors.ModelError, match="model_type='gpt2'.*backend='torch'"):
        write_gguf(model, tok, "unused.gguf")


llama_cpp = pytest.importorskip("llama_cpp")


def _torch_logprobs(model, ids):
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1).numpy()


def test_quant_gguf_round_trip_matches_torch(tmp_path):
    lm = quant_llama()
    ids = [int(i) for i in lm.tokenize(TEXT[:300])]
    ref = _torch_logprobs(lm.model, ids)
    f32 = LlamaCppLM(write_gguf(lm.model, lm.tokenizer, tmp_path / "f32.gguf", pre="gpt-2"), n_threads=1)
    assert f32.tokenize(TEXT[:300]) == ids
    assert kld(ref, f32.logprobs_ids(ids)) < 1e-3
    # Q4_0 codes chosen here: llama.cpp must reproduce torch run on the same dequantized values
    params = dict(lm.model.named_parameters())
    tensors, deq = {}, lm.model.__class__(lm.model.config).eval()
    deq.load_state_dict(lm.model.state_dict())
    for n, p in params.items():
        if p.ndim == 2 and "embed" not in n:
            q, d, m = GRIDS["Q4_0"].round(p.detach(), 32)
            tensors[n] = QTensor("Q4_0", q, d, m)
            deq.get_parameter(n).data.copy_(tensors[n].dequantize())
    q4 = LlamaCppLM(write_gguf(lm.model, lm.tokenizer, tmp_path / "q4.gguf", tensors, pre="gpt-2"), n_threads=1)
    lp = q4.logprobs_ids(ids)
    own = kld(_torch_logprobs(deq, ids), lp)  # against the same codes in torch
    off = kld(ref, lp)  # against the float model
    assert own < 0.2 * off, (own, off)
    assert q4.file_bytes < 0.5 * f32.file_bytes


def test_quant_llamacpp_backend_saves_and_loads_as_gguf(tmp_path):
    lm = quant_llama()
    r = ss.quantize(lm, ss.WeightOnly(bits=4, group_size=32, backend="llamacpp"), calibration=CALIB, threads=1)
    q = r.model
    assert isinstance(q, LlamaCppLM) and r.record.backend == "llamacpp"
    assert {x["format"] for x in r.record.layers} == {"Q4_0", "Q8_0"}  # tied embedding/head: one Q8_0 tensor
    assert isinstance(q.generate("The quick", 8, ignore_eos=True), str)
    ids, lp = q.logprobs(TEXT[:200])
    ss.save(q, tmp_path / "saved")
    back = ss.load(tmp_path / "saved")
    assert isinstance(back, LlamaCppLM)
    np.testing.assert_allclose(back.logprobs(TEXT[:200])[1], lp, atol=1e-5)
    bare = ss.load(q.path)  # the .gguf file itself: slimstack's key says it is a llama.cpp model
    assert isinstance(bare, LlamaCppLM) and bare.record["formats"]
    assert np.isfinite(q.perplexity([TEXT[:200]]))


def test_quant_auto_backend_times_both_and_keeps_the_faster():
    lm = quant_llama()
    r = ss.quantize(lm, ss.WeightOnly(bits=8, group_size=32), calibration=CALIB, threads=1)
    cand = r.record.candidates
    assert {"llamacpp", "torch", "float"} <= set(cand)
    speeds = {b: cand[b]["decode_tokens_per_s"] for b in ("llamacpp", "torch")}
    assert r.record.backend == max(speeds, key=speeds.get)
    assert "fastest measured decode" in r.record.backend_reason
