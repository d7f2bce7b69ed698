"""Wanda / magnitude / N:M sparsity on tiny causal LMs: sparsity reached, ties kept, compact save, same outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.errors import ConfigError, DataError, ModelError
from slimstack.llm import CausalLM
from slimstack.prune import is_nm

from .conftest import TEXT, make_hf_model

CALIB = [TEXT]


def _lm(family: str) -> CausalLM:
    model, tok = make_hf_model(family)
    return CausalLM(model, tok, name=family)


def _folder_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _state(lm: CausalLM) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
def test_wanda_half_reaches_sparsity_per_layer_and_keeps_ties(family):
    lm = _lm(family)
    before = _state(lm)
    r = ss.prune(lm, ss.WandaPruning(sparsity=0.5), calibration=CALIB)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())  # input unchanged
    assert len(r.pruned) >= 4 * lm.config.num_hidden_layers if family != "gpt2" else len(r.pruned) == 8
    for rec in r.pruned:
        assert rec.extra["sparsity"] == pytest.approx(0.5, abs=0.02), rec.layer
    inner = r.model.model
    skipped = {rec.layer: rec.reason for rec in r.skipped}
    head = next(n for n, m in inner.named_modules() if m is inner.get_output_embeddings())
    assert head in skipped and "LM head" in skipped[head]
    emb = inner.get_input_embeddings().weight
    assert torch.equal(emb, lm.model.get_input_embeddings().weight)  # left dense, unchanged
    if inner.config.tie_word_embeddings:
        assert "tied" in skipped[head]
        assert inner.get_output_embeddings().weight is emb


def test_wanda_reconstructs_layer_outputs_better_than_magnitude_on_outlier_features():
    """Input features with large activations: Wanda keeps their weights, |W| alone does not (Wanda's point)."""
    lm = _lm("llama")
    with torch.no_grad():
        lm.model.model.layers[0].input_layernorm.weight[:4] *= 20.0  # features 0-3 reach q/k/v 20x larger
    w = ss.prune(lm, ss.WandaPruning(sparsity=0.5), calibration=CALIB).model
    m = ss.prune(lm, ss.WandaPruning(sparsity=0.5, importance="magnitude"), calibration=CALIB).model
    xs = []
    h = lm.model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda _m, a, _o: xs.append(a[0]))
    lm.logprobs(TEXT, 100)
    h.remove()
    x = xs[0]

    def err(pruned):
        dense_w = lm.model.model.layers[0].self_attn.q_proj.weight
        sparse_w = pruned.model.model.layers[0].self_attn.q_proj.weight
        with torch.no_grad():
            return float((x.clone() @ (dense_w - sparse_w).T).norm())

    assert err(w) < 0.7 * err(m)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_two_four_pattern_holds_in_every_pruned_layer(family):
    lm = _lm(family)
    r = ss.prune(lm, ss.WandaPruning(nm=(2, 4)), calibration=CALIB)
    for rec in r.pruned:
        mod = r.model.model.get_submodule(rec.layer)
        rows = mod.weight if isinstance(mod, torch.nn.Linear) else mod.weight.T
        assert is_nm(rows, 2, 4), rec.layer
        assert rec.after == rec.before // 2


@pytest.mark.parametrize("cfg", [ss.WandaPruning(sparsity=0.5), ss.WandaPruning(nm=(2, 4)),
                                 ss.MagnitudePruning(sparsity=0.5), ss.NMPruning(n=2, m=4)])
def test_saved_folder_smaller_and_reload_same_logprobs(tmp_path, cfg):
    lm = _lm("llama")
    r = ss.prune(lm, cfg, calibration=CALIB)
    dense_dir, sparse_dir = ss.save(lm, tmp_path / "dense"), ss.save(r.model, tmp_path / "sparse")
    assert _folder_bytes(sparse_dir) < _folder_bytes(dense_dir)
    back = ss.load(sparse_dir)
    assert isinstance(back, CausalLM)
    assert back.model.get_output_embeddings().weight is back.model.get_input_embeddings().weight
    np.testing.assert_allclose(back.logprobs(TEXT, 64)[1], r.model.logprobs(TEXT, 64)[1], atol=1e-5)
    assert back.generate("The quick", 5) == r.model.generate("The quick", 5)


def test_sparse_save_shrinks_the_decoder_weights_by_the_bitmask_rate(tmp_path):
    lm = _lm("gpt2")
    r = ss.prune(lm, ss.NMPruning(n=2, m=4), calibration=CALIB)  # magnitude N:M: calibration not needed
    dense = _folder_bytes(ss.save(lm, tmp_path / "d"))
    sparse = _folder_bytes(ss.save(r.model, tmp_path / "s"))
    pruned = sum(rec.before for rec in r.pruned)
    # each pruned float32 weight: half of 4 bytes kept plus 1 bit of mask -> 2.125 bytes saved... at most 1.875 saved
    saved = dense - sparse
    assert 0.8 * 1.875 * pruned < saved < 1.05 * 1.875 * pruned


def test_raw_transformers_model_is_taken():
    model, tok = make_hf_model("llama")
    ids = [tok(TEXT)["input_ids"]]
    r = ss.prune(model, ss.WandaPruning(sparsity=0.5), calibration=ids)
    assert type(r.model) is type(model)
    assert r.summary["sparsity_of_pruned_layers"] == pytest.approx(0.5, abs=0.01)


def test_recovery_keeps_zeros_and_lowers_loss():
    lm = _lm("llama")
    r = ss.prune(lm, ss.WandaPruning(sparsity=0.5, recovery="distill", recovery_steps=20, recovery_lr=1e-3),
                 calibration=CALIB)
    assert r.summary["sparsity_of_pruned_layers"] == pytest.approx(0.5, abs=0.01)
    for rec in r.pruned:
        assert rec.extra["sparsity"] == pytest.approx(0.5, abs=0.02)
    h = r.summary["recovery"]
    assert h["steps"] == 20 and h["loss_last"] < h["loss_first"]


def test_deterministic():
    lm = _lm("qwen2")
    a = ss.prune(lm, ss.WandaPruning(nm=(2, 4)), calibration=CALIB).model
    b = ss.prune(lm, ss.WandaPruning(nm=(2, 4)), calibration=CALIB).model
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


@pytest.mark.parametrize("make, match", [
    (lambda: ss.WandaPruning(sparsity=1.0), "sparsity=1.0 must be a number in"),
    (lambda: ss.WandaPruning(sparsity=-0.1), "sparsity=-0.1"),
    (lambda: ss.WandaPruning(nm=(4, 2)), r"nm=\(4, 2\) must be \(n, m\)"),
    (lambda: ss.WandaPruning(importance="taylor"), "importance='taylor'"),
    (lambda: ss.WandaPruning(recovery="finetune"), "recovery='finetune'"),
    (lambda: ss.LayerDrop(layers=0), "layers=0"),
    (lambda: ss.WidthPruning(ffn_ratio=0, head_ratio=0), "removes nothing"),
    (lambda: ss.WidthPruning(heads="kv"), "heads='kv'"),
])
def test_bad_configs(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_bad_inputs():
    lm = _lm("llama")
    with pytest.raises(DataError, match="calibration text is empty"):
        ss.prune(lm, ss.WandaPruning(), calibration=[""])
    with pytest.raises(DataError, match="pass calibration="):
        ss.prune(lm, ss.WandaPruning())
    with pytest.raises(DataError, match="task 'classification'"):
        ss.prune(lm, ss.WandaPruning(), calibration=ss.datasets.load("digits"))
    with pytest.raises(ModelError, match="causal language models"):
        ss.prune(torch.nn.Sequential(torch.nn.Linear(4, 4)), ss.WandaPruning(), calibration=CALIB)


def test_configs_round_trip():
    for cfg in (ss.WandaPruning(nm=(2, 4)), ss.LayerDrop(layers=2, importance="kld"),
                ss.WidthPruning(ffn_ratio=0.5, head_ratio=0.5, heads="queries")):
        assert ss.config_from_dict(cfg.to_dict()) == cfg
