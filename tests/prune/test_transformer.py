import json

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.prune._encoder_io import layer_sizes

SENTS = ["A man is playing a flute.", "Two dogs run in the park.", "The stock market fell sharply today."]


def _emb(enc, sents=SENTS):
    with torch.no_grad():
        return enc(**enc.tokenize(sents)).numpy()


def test_heads_and_ffn_neurons_removed_input_unchanged(encoder, sts):
    before = _emb(encoder)
    r = ss.prune(encoder, ss.StructuredPruning(ratio=0.5, head_ratio=0.5, importance="l2"), data=sts)
    assert layer_sizes(r.model) == {"heads": [2, 2], "ffn": [32, 32]}
    assert layer_sizes(encoder) == {"heads": [4, 4], "ffn": [64, 64]}
    assert np.array_equal(_emb(encoder), before)
    att = r.model.model.encoder.layer[0].attention
    assert att.self.query.out_features == 16 and att.output.dense.in_features == 16
    assert r.model.encode(SENTS).shape == (3, 32)
    assert {rec.unit for rec in r.pruned} == {"heads", "neurons"}


def test_ratio_zero_changes_nothing(encoder):
    r = ss.prune(encoder, ss.StructuredPruning(ratio=0.0, head_ratio=0.0))
    assert np.allclose(_emb(r.model), _emb(encoder), atol=1e-6)
    assert all(rec.action == "skipped" for rec in r.record)


def test_removing_a_head_equals_masking_it(encoder):
    """Cutting head h gives exactly the output of the full model with head h's context zeroed."""
    from slimstack.prune._transformer import keep_heads

    layer = 1
    import copy

    cut = copy.deepcopy(encoder)
    keep_heads(cut.model.encoder.layer[layer], [0, 2, 3])
    masked = copy.deepcopy(encoder)
    att = masked.model.encoder.layer[layer].attention.self
    d = att.attention_head_size
    mask = torch.ones(4 * d)
    mask[d : 2 * d] = 0
    att.register_forward_hook(lambda m, a, out: (out[0] * mask, *out[1:]))
    assert np.allclose(_emb(cut), _emb(masked), atol=1e-5)


def test_taylor_needs_scored_pairs(encoder):
    with pytest.raises(ss.DataError, match="needs scored sentence pairs.*importance='l2'"):
        ss.prune(encoder, ss.StructuredPruning(importance="taylor"),
                 data=ss.datasets.load("stsb", split="train").subset(slice(0, 8)).as_text())


def test_taylor_prunes_and_global_ranking_varies_widths(encoder, sts):
    r = ss.prune(encoder, ss.StructuredPruning(ratio=0.5, importance="taylor", taylor_batches=2), data=sts)
    assert layer_sizes(r.model)["ffn"] == [32, 32]
    g = ss.prune(encoder, ss.StructuredPruning(ratio=0.5, global_pruning=True, round_to=4), data=sts)
    ffn = layer_sizes(g.model)["ffn"]
    assert all(f % 4 == 0 and f > 0 for f in ffn) and abs(sum(ffn) - 64) <= 8


def test_distill_recovery_moves_towards_teacher(encoder, sts):
    cfg = ss.StructuredPruning(ratio=0.75, head_ratio=0.5, seed=0)
    plain = ss.prune(encoder, cfg, data=sts)
    rec = ss.prune(encoder, cfg.replace(recovery="distill", recovery_steps=15, recovery_lr=1e-3), data=sts)
    teacher = encoder.encode(SENTS)
    cos = lambda m: float((m.encode(SENTS) * teacher).sum(1).mean())  # noqa: E731
    assert cos(rec.model) > cos(plain.model)
    assert rec.summary["recovery"]["loss_last"] < rec.summary["recovery"]["loss_first"]


def test_pruned_encoder_saves_and_loads_without_pickle(encoder, sts, tmp_path):
    r = ss.prune(encoder, ss.StructuredPruning(ratio=0.5, head_ratio=0.25, layer_ratios={
        "model.encoder.layer.1.intermediate": 0.25}), data=sts)
    assert layer_sizes(r.model)["ffn"] == [32, 48]  # per-layer widths HF's config cannot express
    ss.save(r.model, tmp_path / "enc")
    assert json.loads((tmp_path / "enc" / "slimstack.json").read_text())["format"] == "pruned_encoder"
    back = ss.load(tmp_path / "enc")
    assert layer_sizes(back) == layer_sizes(r.model)
    assert np.allclose(_emb(back), _emb(r.model), atol=1e-6)


def test_magnitude_on_encoder_saves_sparse(encoder, tmp_path):
    r = ss.prune(encoder, ss.MagnitudePruning(sparsity=0.7))
    assert all(rec.layer.startswith("model.encoder") or rec.layer.startswith("model.pooler") for rec in r.record)
    ss.save(r.model, tmp_path / "sparse")
    back = ss.load(tmp_path / "sparse")
    assert np.allclose(_emb(back), _emb(r.model), atol=1e-6)


def test_ignore_a_layer(encoder, sts):
    r = ss.prune(encoder, ss.StructuredPruning(ratio=0.5, head_ratio=0.5, ignore=("model.encoder.layer.0",)), data=sts)
    assert layer_sizes(r.model) == {"heads": [4, 2], "ffn": [64, 32]}
    assert r.layer("model.encoder.layer.0.attention").reason == "listed in ignore"
