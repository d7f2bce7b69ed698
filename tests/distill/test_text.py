"""Sentence encoders distil on unlabelled sentences, with hidden-state matching through a projection."""

import numpy as np
import torch

import slimstack as ss
from slimstack.datasets import Dataset

SENTENCES = [f"{a} {b} {c}" for a in ("a cat", "the dog", "one bird", "my fish") for b in ("sat", "ran", "flew")
             for c in ("today", "here", "at noon", "slowly")]


def mean_cos(a, b):
    return float((a * b).sum(1).mean())


def test_encoder_student_moves_towards_the_teacher_on_unlabelled_sentences(tiny_encoder):
    from transformers import BertModel

    torch.manual_seed(1)  # a fresh random student: its embeddings point elsewhere
    config = tiny_encoder.model.config.__class__(**{**tiny_encoder.model.config.to_dict(), "num_hidden_layers": 2})
    student = ss.zoo.SentenceEncoder(BertModel(config).eval(), tiny_encoder.tokenizer, max_length=16)
    target = tiny_encoder.encode(SENTENCES)
    before = mean_cos(student.encode(SENTENCES), target)
    cfg = ss.DistillConfig(epochs=6, batch_size=16, lr=3e-3, max_length=16, progress=False, threads=1)
    d = ss.distill(tiny_encoder, student, cfg, train=SENTENCES)
    after = mean_cos(d.model.encode(SENTENCES), target)
    assert d.record["loss"] == "cosine" and d.record["teacher_output"] == "embedding"
    assert before < 0.8 and after > 0.95
    assert hasattr(d.model, "encode") and d.model.model.config.num_hidden_layers == 2


def test_hidden_state_matching_with_sts_validation(tiny_encoder):
    student = ss.zoo.shrink(tiny_encoder, layers=[0, 5])
    pairs = list(zip(SENTENCES[:24], SENTENCES[24:]))
    val = Dataset(name="toy-sts", task="sts", pairs=pairs, scores=np.linspace(0, 5, len(pairs)).astype(np.float32))
    cfg = ss.DistillConfig(epochs=2, batch_size=16, lr=1e-3, progress=False, threads=1,
                           features=(("model.encoder.layer.0", "model.encoder.layer.2"),))
    d = ss.distill(tiny_encoder, student, cfg, train=val, val=val)  # an sts Dataset trains on its sentences
    assert d.record["rows"] == 2 * len(pairs)
    assert [h["epoch"] for h in d.history] == [0, 1, 2] and all(-1 <= h["val"] <= 1 for h in d.history)
    assert d.history[2]["feat0"] < d.history[1]["feat0"]
    assert "Identity" in d.record["projections_dropped"][0]  # same width: nothing to learn
    assert not any(m._forward_hooks for m in tiny_encoder.modules())
    torch.testing.assert_close(  # the teacher is untouched
        tiny_encoder.model.encoder.layer[2].output.dense.weight,
        ss.zoo.shrink(tiny_encoder, layers=6).model.encoder.layer[2].output.dense.weight)
