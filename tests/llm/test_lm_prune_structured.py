"""Layer drop and GQA-respecting width pruning on tiny causal LMs: right cut, config updated, save/load runs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.errors import ConfigError, ModelError
from slimstack.llm import CausalLM

from .conftest import TEXT, make_hf_model

CALIB = [TEXT]


def _lm(family: str, **kw) -> CausalLM:
    model, tok = make_hf_model(family)
    return CausalLM(model, tok, name=family)


def _identity_block(lm: CausalLM, i: int) -> None:
    """Zero the projections that write into the residual stream: block ``i`` returns its input."""
    block = lm.model.model.layers[i] if hasattr(lm.model, "model") else lm.model.transformer.h[i]
    with torch.no_grad():
        for name, mod in block.named_modules():
            if name.endswith(("o_proj", "down_proj", "attn.c_proj", "mlp.c_proj")):
                mod.weight.zero_()
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()


@pytest.mark.parametrize("family, identity, importance", [("llama", 1, "cosine"), ("gpt2", 0, "cosine"),
                                                          ("qwen2", 1, "cosine"), ("llama", 2, "kld")])
def test_layer_drop_picks_the_identity_like_block(family, identity, importance):
    lm = _lm(family)
    _identity_block(lm, identity)
    n = lm.config.num_hidden_layers if family != "gpt2" else lm.config.n_layer
    r = ss.prune(lm, ss.LayerDrop(layers=1, importance=importance), calibration=CALIB)
    assert r.summary["dropped_layers"] == [identity]
    assert r.summary["importance"][identity] == pytest.approx(0.0, abs=1e-6)
    assert min(s for i, s in enumerate(r.summary["importance"]) if i != identity) > 1e-4
    # dropping an exact identity block changes nothing
    np.testing.assert_allclose(r.model.logprobs(TEXT, 64)[1], lm.logprobs(TEXT, 64)[1], atol=1e-4)
    assert len(r.pruned) == 1 and len(r.record) == n
    assert len(r.model.model.model.layers if family != "gpt2" else r.model.model.transformer.h) == n - 1


def test_layer_drop_saves_loads_and_keeps_ties(tmp_path):
    lm = _lm("llama")
    r = ss.prune(lm, ss.LayerDrop(layers=2), calibration=CALIB)
    assert r.model.config.num_hidden_layers == 1 and lm.config.num_hidden_layers == 3  # input unchanged
    back = ss.load(ss.save(r.model, tmp_path / "m"))
    assert back.config.num_hidden_layers == 1
    assert back.model.lm_head.weight is back.model.model.embed_tokens.weight
    np.testing.assert_allclose(back.logprobs(TEXT, 64)[1], r.model.logprobs(TEXT, 64)[1], atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("heads, kv, q", [("groups", 1, 2), ("queries", 2, 2)])
def test_width_pruning_respects_gqa_and_round_trips(tmp_path, family, heads, kv, q):
    lm = _lm(family)  # 4 query heads in 2 KV groups, head_dim 8, FFN 64
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    r = ss.prune(lm, ss.WidthPruning(ffn_ratio=0.25, head_ratio=0.5, heads=heads), calibration=CALIB)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    cfg = r.model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size) == (q, kv, 8, 48)
    attn = r.model.model.model.layers[0].self_attn
    assert attn.q_proj.out_features == q * 8 and attn.k_proj.out_features == kv * 8
    assert attn.o_proj.in_features == q * 8 and r.model.model.model.layers[0].mlp.down_proj.in_features == 48
    rec = r.layer("model.layers.0.self_attn")
    groups = rec.extra["kept_kv_groups"]
    # every kept query head belongs to a kept KV group, and every kept group keeps the same number of heads
    assert all(h // 2 in groups for h in rec.extra["kept_query_heads"])
    assert sorted(h // 2 for h in rec.extra["kept_query_heads"]) == sorted(groups * (q // kv))
    folder = ss.save(r.model, tmp_path / "m")
    saved = json.loads((folder / "model" / "config.json").read_text())
    assert saved["num_key_value_heads"] == kv and saved["intermediate_size"] == 48
    back = ss.load(folder)
    np.testing.assert_allclose(back.logprobs(TEXT, 64)[1], r.model.logprobs(TEXT, 64)[1], atol=1e-5)
    assert back.generate("The quick", 4) == r.model.generate("The quick", 4)
    assert np.isfinite(back.perplexity(TEXT))


def test_width_pruning_keeps_the_active_neurons():
    """FFN neurons whose down_proj columns are zero contribute nothing; they go first."""
    lm = _lm("llama")
    with torch.no_grad():
        for layer in lm.model.model.layers:
            layer.mlp.down_proj.weight[:, :16] = 0.0
    r = ss.prune(lm, ss.WidthPruning(ffn_ratio=0.25), calibration=CALIB)
    np.testing.assert_allclose(r.model.logprobs(TEXT, 64)[1], lm.logprobs(TEXT, 64)[1], atol=1e-5)


def test_structured_pruning_on_a_llama_no_longer_traces():
    lm = _lm("llama")
    r = ss.prune(lm, ss.StructuredPruning(ratio=0.5, head_ratio=0.5), calibration=CALIB)
    assert r.model.config.intermediate_size == 32 and r.model.config.num_key_value_heads == 1
    assert r.summary["config"]["type"] == "StructuredPruning"


@pytest.mark.parametrize("config, named", [
    (lambda: ss.StructuredPruning(ratio=0.5, tolerance=0.01), "tolerance=0.01"),
    (lambda: ss.StructuredPruning(ratio=0.5, importance="taylor"), "importance='taylor'"),
    (lambda: ss.StructuredPruning(ratio=0.5, layer_ratios={"x": 0.1}), "layer_ratios="),
    (lambda: ss.MagnitudePruning(sparsity=0.5, scope="global"), "scope='global'"),
])
def test_general_configs_refuse_options_the_lm_path_would_ignore(config, named):
    with pytest.raises(ConfigError, match=re.escape(named) + ".*would be ignored.*(WidthPruning|WandaPruning)"):
        ss.prune(_lm("llama"), config(), calibration=CALIB)


def test_width_recovery_lowers_distillation_loss():
    lm = _lm("llama")
    r = ss.prune(lm, ss.WidthPruning(ffn_ratio=0.5, recovery="distill", recovery_steps=20, recovery_lr=1e-4),
                 calibration=CALIB)
    h = r.summary["recovery"]
    assert h["steps"] == 20 and h["loss_last"] < h["loss_first"]


def test_structured_bad_inputs():
    lm = _lm("llama")
    with pytest.raises(ConfigError, match="layers=3 would remove all 3"):
        ss.prune(lm, ss.LayerDrop(layers=3), calibration=CALIB)
    gpt2 = _lm("gpt2")
    with pytest.raises(ModelError, match="WidthPruning cuts Llama-family"):
        ss.prune(gpt2, ss.WidthPruning(ffn_ratio=0.25), calibration=CALIB)
    with pytest.raises(ModelError, match="causal language models"):
        ss.prune(torch.nn.Linear(3, 3), ss.LayerDrop(), calibration=CALIB)


def _kld(lm: CausalLM, ref: CausalLM) -> float:
    p = ref.logprobs(TEXT, 64)[1]
    q = lm.logprobs(TEXT, 64)[1]
    return float((np.exp(p) * (p - q)).sum(-1).mean())


@pytest.mark.parametrize("cut", [dict(ffn_ratio=0.5), dict(ffn_ratio=0.0, head_ratio=0.5, heads="queries")])
def test_width_refit_brings_the_pruned_model_closer(cut):
    """The least-squares refit of down_proj / o_proj lowers the KLD to the unpruned model on the calibration text."""
    lm = _lm("llama")
    plain = ss.prune(lm, ss.WidthPruning(**cut, refit=False), calibration=CALIB)
    refit = ss.prune(lm, ss.WidthPruning(**cut), calibration=CALIB)
    # the same units go either way; only the reading layer's weights change
    assert [r.after for r in plain.record] == [r.after for r in refit.record]
    gains = [r.extra["refit_error_removed"] for r in refit.record if r.action == "pruned"]
    assert len(gains) == 3 and all(0.05 < g <= 1.0 for g in gains)
    assert "refit_error_removed" not in plain.record[0].extra
    assert _kld(refit.model, lm) < 0.8 * _kld(plain.model, lm)


def test_width_refit_leaves_kept_columns_alone_when_the_cut_ones_wrote_nothing():
    lm = _lm("llama")
    with torch.no_grad():
        for layer in lm.model.model.layers:
            layer.mlp.down_proj.weight[:, :16] = 0.0
    r = ss.prune(lm, ss.WidthPruning(ffn_ratio=0.25, refit=True), calibration=CALIB)
    for old, new in zip(lm.model.model.layers, r.model.model.model.layers, strict=True):
        torch.testing.assert_close(new.mlp.down_proj.weight, old.mlp.down_proj.weight[:, 16:])
