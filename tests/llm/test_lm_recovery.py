"""Recovery after LM pruning on a tiny Llama: distillation through ss.distill, trainable subsets, masks, resume,
and teacher-generated text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.errors import ConfigError, DataError
from slimstack.llm import CausalLM, teacher_text

from .conftest import TEXT, make_config, make_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

CALIB = [TEXT]
TRAIN = [TEXT]


def _teacher(layers: int = 4) -> CausalLM:
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(0)
    cfg = make_config("llama", len(tok), initializer_range=0.1, num_hidden_layers=layers)
    return CausalLM(AutoModelForCausalLM.from_config(cfg).eval(), tok, name="teacher")


def _rec(**kw) -> dict:
    base = dict(recovery="distill", recovery_steps=6, recovery_lr=1e-3, recovery_tokens=32, recovery_batch=2,
                calibration_tokens=64)
    return {**base, **kw}


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if k in before and not torch.equal(before[k], v)}


def _recovered(lm: CausalLM, config: type, params: str, **cut) -> tuple:
    """(unrecovered result, recovered result, names of the tensors recovery changed); same calibration for both."""
    base = ss.prune(lm, config(**cut, calibration_tokens=64), calibration=CALIB)
    before = {k: v.clone() for k, v in base.model.model.state_dict().items()}
    r = ss.prune(lm, config(**cut, **_rec(recovery_params=params)), calibration=CALIB)
    return base, r, _changed(before, r.model.model)


def _kld(teacher: CausalLM, student: CausalLM) -> float:
    ref = teacher.logprobs(TEXT, 64)[1]
    lp = student.logprobs(TEXT, 64)[1]
    return float((np.exp(ref) * (ref - lp)).sum(-1).mean())


def test_width_distill_recovery_on_train_text_lowers_the_kld():
    lm = _teacher()
    plain = ss.prune(lm, ss.WidthPruning(ffn_ratio=0.75, refit=False), calibration=CALIB)
    r = ss.prune(lm, ss.WidthPruning(ffn_ratio=0.75, refit=False, **_rec(recovery_steps=40, recovery_tokens=64)),
                 calibration=CALIB, train=TRAIN)
    h = r.summary["recovery"]
    assert h["recovery"] == "distill" and h["text"] == "train=" and h["steps"] == 40
    assert h["window_tokens"] == 64 and h["trained_params"] == sum(p.numel() for p in r.model.model.parameters())
    assert _kld(lm, r.model) < 0.8 * _kld(lm, plain.model)
    assert all(p.requires_grad for p in r.model.model.parameters())  # the requires_grad flags come back


def test_blocks_recovery_keeps_the_tied_embedding_and_head():
    _, r, changed = _recovered(_teacher(), ss.WidthPruning, "blocks", ffn_ratio=0.5)
    assert "model.embed_tokens.weight" not in changed and "lm_head.weight" not in changed
    assert "model.norm.weight" in changed and any(k.startswith("model.layers.0.mlp") for k in changed)
    assert r.model.model.lm_head.weight is r.model.model.model.embed_tokens.weight
    assert r.summary["recovery"]["trained_params"] < sum(p.numel() for p in r.model.model.parameters()) - 1000


def test_near_cut_trains_only_the_layers_beside_the_dropped_one():
    base, r, changed = _recovered(_teacher(layers=4), ss.LayerDrop, "near_cut", layers=1)
    dropped = base.summary["dropped_layers"][0]
    near = {j for j, i in enumerate(base.summary["kept_layers"]) if abs(i - dropped) == 1}
    assert r.summary["dropped_layers"] == [dropped]
    assert {int(k.split(".")[2]) for k in changed if k.startswith("model.layers.")} == near


def test_norms_recovery_changes_only_norm_weights():
    _, _, changed = _recovered(_teacher(), ss.WidthPruning, "norms", ffn_ratio=0.25)
    assert changed and all("norm" in k for k in changed)


def test_sparse_distill_recovery_keeps_pruned_zeros():
    lm = _teacher()
    plain = ss.prune(lm, ss.WandaPruning(sparsity=0.5, calibration_tokens=64), calibration=CALIB)
    r = ss.prune(lm, ss.WandaPruning(sparsity=0.5, **_rec()), calibration=CALIB)
    for (name, a), (_, b) in zip(plain.model.model.named_parameters(), r.model.model.named_parameters(), strict=True):
        if name.startswith("model.layers.") and a.ndim == 2:
            assert torch.equal(a == 0, b == 0), name
    assert not any("parametrizations" in k for k in r.model.model.state_dict())
    assert r.summary["recovery"]["steps"] == 6


def test_recovery_resumes_from_its_checkpoint(tmp_path):
    lm = _teacher()
    cfg = ss.WidthPruning(ffn_ratio=0.5, **_rec(recovery_checkpoint_dir=str(tmp_path / "ck"),
                                                recovery_cache_dir=str(tmp_path / "cache")))
    first = ss.prune(lm, cfg, calibration=CALIB, train=TRAIN)
    again = ss.prune(lm, cfg, calibration=CALIB, train=TRAIN)
    assert first.summary["recovery"]["resumed_from_epoch"] is None
    assert again.summary["recovery"]["resumed_from_epoch"] is not None and again.summary["recovery"]["cache_hit"]
    np.testing.assert_allclose(again.model.logprobs(TEXT, 32)[1], first.model.logprobs(TEXT, 32)[1], atol=1e-6)


def test_recovery_config_errors():
    with pytest.raises(ConfigError, match="recovery_params='layers' is not allowed"):
        ss.WidthPruning(recovery_params="layers")
    with pytest.raises(ConfigError, match="recovery_tokens=1 must be an integer >= 2"):
        ss.LayerDrop(recovery_tokens=1)
    with pytest.raises(ConfigError, match="refit='yes'"):
        ss.WidthPruning(refit="yes")


def test_teacher_text_is_seeded_and_starts_from_the_seed_text():
    lm = _teacher()
    a = teacher_text(lm, TEXT, n=3, prompt_tokens=4, max_new_tokens=6, seed=1)
    b = teacher_text(lm, [TEXT], n=3, prompt_tokens=4, max_new_tokens=6, seed=1)
    c = teacher_text(lm, TEXT, n=3, prompt_tokens=4, max_new_tokens=6, seed=2)
    assert a == b and a != c and len(a) == 3
    assert a[0].startswith(lm.decode(lm.tokenize(TEXT)[:4]))
    assert all(len(t) > len(lm.decode(lm.tokenize(TEXT)[:4])) for t in a)
    with pytest.raises(DataError, match="fewer than prompt_tokens=999"):
        teacher_text(lm, "short", prompt_tokens=999)
    with pytest.raises(ConfigError, match="top_p=0"):
        teacher_text(lm, TEXT, top_p=0)
