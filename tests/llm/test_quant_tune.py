"""WeightOnly(formats=) on causal LMs, and distill_steps: block scales fitted by logit distillation, codes fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.quantize.backends.llamacpp._gptq import collect_hessians, linear_names
from slimstack.quantize.backends.llamacpp._lm_quantize import _Rounder
from slimstack.quantize.backends.llamacpp._plan import EMBED, calibration_windows
from slimstack.quantize.backends.llamacpp._tune import tune_scales

from .conftest import TEXT
from .test_quant_lm import CALIB, _one_thread, quant_llama  # noqa: F401  (fixture)


def test_quant_formats_config_is_checked():
    assert ss.WeightOnly(bits=4, formats=["Q4_0", "Q8_0"]).formats == ["Q4_0", "Q8_0"]
    assert ss.WeightOnly.from_dict(ss.WeightOnly(bits=4, formats=("Q4_0", "Q8_0")).to_dict()).formats == ("Q4_0", "Q8_0")
    with pytest.raises(ss.errors.ConfigError, match="narrowest to widest"):
        ss.WeightOnly(bits=4, formats=("Q8_0", "Q4_0"))
    with pytest.raises(ss.errors.ConfigError, match="narrowest to widest"):
        ss.WeightOnly(bits=4, formats=("Q4_0", "IQ4_NL"))  # both 4.5 bits: not a step up
    with pytest.raises(ss.errors.ConfigError, match="Q4_K"):
        ss.WeightOnly(bits=4, formats=("Q4_K", "Q8_0"))
    with pytest.raises(ss.errors.ConfigError, match="disagree"):
        ss.WeightOnly(bits=4, format="IQ4_NL", formats=("Q4_0", "Q8_0"))
    with pytest.raises(ss.errors.ConfigError, match="bits=8"):
        ss.WeightOnly(bits=8, formats=("Q4_0", "Q8_0"))
    with pytest.raises(ss.errors.ConfigError, match="tuple of block formats"):
        ss.WeightOnly(bits=4, formats="Q4_0")
    with pytest.raises(ss.errors.ConfigError, match="untie_head=True.*smooth"):
        ss.WeightOnly(bits=4, untie_head=True, smooth=0.5)
    with pytest.raises(ss.errors.ConfigError, match="distill_steps=-1"):
        ss.WeightOnly(bits=4, distill_steps=-1)


def _setup():
    lm = quant_llama()
    hf = lm.model
    wins = calibration_windows(lm.tokenizer, CALIB, 32, 64, 0)
    names = linear_names(hf)
    h, n = collect_hessians(hf, wins, names)
    r = _Rounder(hf, h, n, "gptq", 32)
    chosen = {m + ".weight": r(m + ".weight", "Q4_0") for m in names}
    chosen[EMBED] = r(EMBED, "Q8_0")
    return lm, hf, wins, chosen


def test_quant_tune_scales_lowers_held_out_kl_keeps_codes_and_inputs():
    lm, hf, wins, chosen = _setup()
    before = {k: v.detach().clone() for k, v in hf.state_dict().items()}
    d_before = {k: q.d.clone() for k, q in chosen.items()}
    model, tuned, info = tune_scales(hf, chosen, wins, steps=80, seed=0)
    assert info["kept"] is True and info["held_out_kl_after"] < 0.97 * info["held_out_kl_before"], info
    assert info["tensors"] == len(chosen) and info["scales"] == sum(q.d.numel() for q in chosen.values())
    for k, q in tuned.items():
        assert torch.equal(q.q, chosen[k].q) and q.grid == chosen[k].grid  # codes and formats as rounded
        assert torch.equal(q.d, q.d.half().float())  # scales the file can hold (float16)
    assert any(not torch.equal(tuned[k].d, chosen[k].d) for k in tuned)
    assert all(torch.equal(chosen[k].d, d_before[k]) for k in chosen)  # the inputs are not modified
    assert all(torch.equal(v, before[k]) for k, v in hf.state_dict().items())
    norm = "model.layers.0.input_layernorm.weight"
    assert not torch.equal(model.get_parameter(norm), hf.get_parameter(norm))
    # the tuned scales and norms, run as a float model, are closer to the float model on unseen text
    ids = torch.tensor(lm.tokenize(TEXT)[:64])[None]
    with torch.no_grad():
        ref = torch.log_softmax(hf(input_ids=ids).logits[0], -1)

        def kl(m, qts):
            sd = {k: q.dequantize() for k, q in qts.items()}
            out = torch.func.functional_call(m, sd, args=(), kwargs={"input_ids": ids}).logits[0]
            return float((ref.exp() * (ref - torch.log_softmax(out, -1))).sum(-1)[8:].mean())
        assert kl(model, tuned) < kl(hf, chosen)


def test_quant_tune_scales_gives_up_when_it_does_not_help():
    lm, hf, wins, chosen = _setup()
    model, tuned, info = tune_scales(hf, chosen, wins, steps=0, seed=0)
    assert info["kept"] is False and model is hf and tuned is chosen


llama_cpp = pytest.importorskip("llama_cpp")


def test_quant_formats_ladder_puts_the_head_at_4_bits_and_distill_writes_the_tuned_scales(tmp_path):
    lm = quant_llama()
    cfg = ss.WeightOnly(bits=4, formats=("Q4_0", "Q8_0"), backend="llamacpp", calibration_size=64, window=32)
    plain = ss.quantize(lm, cfg, calibration=CALIB, threads=1)
    fmts = {x["name"]: x["format"] for x in plain.record.layers}
    assert set(fmts.values()) == {"Q4_0"} and fmts["model.embed_tokens"] == "Q4_0"  # head too, no budget
    tuned = ss.quantize(lm, ss.WeightOnly(**{**cfg.to_dict()["data"], "distill_steps": 80}), calibration=CALIB,
                        threads=1)
    note = next(n for n in tuned.record.notes if n.startswith("scales distilled"))
    assert "kept" in note and "not lower" not in note
    gguf = pytest.importorskip("gguf")
    types = [{t.name: (t.tensor_type.name, int(t.n_bytes)) for t in gguf.GGUFReader(str(m.model.path)).tensors}
             for m in (plain, tuned)]
    assert types[0] == types[1]  # same tensor types and bytes (the record in the metadata grows)
    ids = lm.tokenize(TEXT)[:96]
    _, ref = lm.logprobs(np.asarray(ids), max_tokens=len(ids))

    def kld(m):
        lp = m.logprobs_ids(ids)
        return float((np.exp(ref) * (ref - lp)).sum(-1)[8:].mean())
    assert kld(tuned.model) < kld(plain.model)


def test_quant_untie_head_rounds_the_head_for_its_inputs_and_keeps_the_lookup_at_8_bits():
    gguf = pytest.importorskip("gguf")
    lm = quant_llama()
    base = dict(bits=4, formats=("Q4_0", "Q8_0"), backend="llamacpp", calibration_size=64, window=32)
    tied = ss.quantize(lm, ss.WeightOnly(**base), calibration=CALIB, threads=1)
    untied = ss.quantize(lm, ss.WeightOnly(**base, untie_head=True), calibration=CALIB, threads=1)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(untied.model.path)).tensors}
    assert types["output.weight"] == "Q4_0" and types["token_embd.weight"] == "Q8_0"
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(str(tied.model.path)).tensors}
    rec = {x["name"]: x for x in untied.record.layers}
    assert rec["lm_head"]["method"] == "gptq" and rec["model.embed_tokens"]["format"] == "Q8_0"
    assert lm.model.config.tie_word_embeddings  # the caller's model is untouched
    assert lm.model.lm_head.weight is lm.model.model.embed_tokens.weight
    ids = lm.tokenize(TEXT)[:96]
    _, ref = lm.logprobs(np.asarray(ids), max_tokens=len(ids))

    def kld(m):
        return float((np.exp(ref) * (ref - m.logprobs_ids(ids))).sum(-1)[8:].mean())
    assert kld(untied.model) < kld(tied.model)
    assert untied.model.generate("the", 4) is not None


def test_quant_tune_scales_trains_under_the_callers_no_grad_and_inference_mode():
    lm, hf, wins, chosen = _setup()
    plain = tune_scales(hf, chosen, wins, steps=10, seed=0)[2]
    with torch.no_grad():
        a = tune_scales(hf, chosen, wins, steps=10, seed=0)[2]
    with torch.inference_mode():
        b = tune_scales(hf, chosen, wins, steps=10, seed=0)[2]
    keys = ("held_out_kl_before", "held_out_kl_after", "train_loss_first", "train_loss_last", "kept")
    assert plain["train_loss_last"] < plain["train_loss_first"]
    assert {k: a[k] for k in keys} == {k: plain[k] for k in keys} == {k: b[k] for k in keys}


def test_quant_iq4nl_ladder_under_a_budget_with_the_head_untied():
    """The target-(d) configuration: IQ4_NL everywhere, the most sensitive tensors at Q8_0 up to the budget."""
    gguf = pytest.importorskip("gguf")
    lm = quant_llama(seed=3)
    base = dict(bits=4, formats=("IQ4_NL", "Q8_0"), untie_head=True, backend="llamacpp", calibration_size=64,
                window=32)
    flat = ss.quantize(lm, ss.WeightOnly(**base), calibration=CALIB, threads=1)
    mix = ss.quantize(lm, ss.WeightOnly(**base, bits_per_weight=5.0), calibration=CALIB, threads=1)
    types = [{t.name: t.tensor_type.name for t in gguf.GGUFReader(str(m.model.path)).tensors} for m in (flat, mix)]
    weights = [{k: v for k, v in t.items() if v != "F32"} for t in types]  # norms stay float32
    assert set(weights[0].values()) == {"IQ4_NL", "Q8_0"} and weights[0]["token_embd.weight"] == "Q8_0"
    assert weights[0]["output.weight"] == "IQ4_NL"  # the head at 4 bits, as its own tensor
    assert sum(v == "Q8_0" for v in weights[0].values()) == 1  # without a budget only the lookup is 8-bit
    assert set(weights[1].values()) == {"IQ4_NL", "Q8_0"} and sum(v == "Q8_0" for v in weights[1].values()) > 1
    rec = [x for x in mix.record.layers if x["name"] != "model.embed_tokens"]  # the head is "lm_head"
    params = dict(lm.model.named_parameters())  # the tied head is listed once, as the embedding
    n = {x["name"]: params.get(x["name"] + ".weight", params["model.embed_tokens.weight"]).numel() for x in rec}
    bpw = sum(x["bits_per_weight"] * n[x["name"]] for x in rec) / sum(n.values())
    assert 4.5 < bpw <= 5.0 + 1e-9  # the budget spent, not exceeded (the lookup embedding not counted)
    ids = lm.tokenize(TEXT[::-1].lower())[:96]  # text the calibration did not see in this form
    _, ref = lm.logprobs(np.asarray(ids), max_tokens=len(ids))

    def kld(m):
        return float((np.exp(ref) * (ref - m.logprobs_ids(ids))).sum(-1)[8:].mean())
    assert kld(mix.model) < kld(flat.model)
