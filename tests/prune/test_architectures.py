"""Heads/FFN pruning, shrink, save and int8 across the transformer families transformers ships.

Tiny random configs (hidden 32, 4 heads, FFN 64, 3 layers) with MiniLM's tokenizer, and a ViT image
classifier on 8x8 digits: the layouts differ (``encoder.layer.i.attention.self.query``,
``transformer.layer.i.attention.q_lin``, ``layers.i.attention.q_proj``), the code paths are shared.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.prune._encoder_io import layer_sizes

FAMILIES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert"]
SENTS = ["A man is playing a flute.", "Two dogs run in the park."]


def _hf(family, vocab):
    import transformers as T

    kw = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=64, vocab_size=vocab)
    torch.manual_seed(0)
    if family == "distilbert":
        return T.DistilBertModel(T.DistilBertConfig(dim=32, n_layers=3, n_heads=4, hidden_dim=64, vocab_size=vocab,
                                                    max_position_embeddings=64))
    cfg, model = {"bert": (T.BertConfig, T.BertModel), "roberta": (T.RobertaConfig, T.RobertaModel),
                  "xlm-roberta": (T.XLMRobertaConfig, T.XLMRobertaModel),
                  "electra": (T.ElectraConfig, T.ElectraModel)}[family]
    return model(cfg(**kw), add_pooling_layer=False) if family != "electra" else model(cfg(**kw))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ss.zoo.minilm_path()), local_files_only=True)


@pytest.fixture(scope="module", params=FAMILIES)
def encoder(request, tokenizer, tmp_path_factory):
    """Saved as a folder with its tokenizer and loaded back, as a user would."""
    folder = tmp_path_factory.mktemp(request.param)
    _hf(request.param, tokenizer.vocab_size).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return ss.load(folder)


@pytest.mark.parametrize("importance", ["l2", "taylor"])
def test_heads_and_neurons_pruned_with_a_dataset(encoder, sts, importance, tmp_path):
    cfg = ss.StructuredPruning(ratio=0.5, head_ratio=0.5, importance=importance, taylor_batches=1)
    before = encoder.encode(SENTS)
    r = ss.prune(encoder, cfg, data=sts)
    assert layer_sizes(r.model) == {"heads": [2, 2, 2], "ffn": [32, 32, 32]}
    assert layer_sizes(encoder) == {"heads": [4, 4, 4], "ffn": [64, 64, 64]}
    np.testing.assert_array_equal(encoder.encode(SENTS), before)
    assert {rec.unit for rec in r.pruned} == {"heads", "neurons"} and len(r.pruned) == 6
    out = r.model.encode(SENTS)
    assert out.shape == (2, 32) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    ss.save(r.model, tmp_path / "p")
    np.testing.assert_allclose(ss.load(tmp_path / "p").encode(SENTS), out, atol=1e-5)


def test_removing_a_head_equals_masking_its_context(encoder):
    """Cutting head 1 of layer 1 equals the full model with that head's context columns zeroed."""
    import copy

    from slimstack._arch import find_stack
    from slimstack.prune._transformer import keep_heads

    cut = copy.deepcopy(encoder)
    stack = find_stack(cut)
    keep_heads(stack.layers()[1], [0, 2, 3], stack)
    masked = copy.deepcopy(encoder)
    mstack = find_stack(masked)
    mask = torch.ones(32)
    mask[8:16] = 0
    mstack.get(mstack.layers()[1], "o").register_forward_pre_hook(lambda m, a: (a[0] * mask,))
    np.testing.assert_allclose(cut.encode(SENTS), masked.encode(SENTS), atol=1e-5)
    assert not np.allclose(cut.encode(SENTS), encoder.encode(SENTS), atol=1e-3)


def test_shrink_keeps_spread_layers(encoder):
    small = ss.zoo.shrink(encoder, layers=2)
    from slimstack._arch import find_stack

    assert len(find_stack(small).layers()) == 2 == small.model.config.num_hidden_layers
    assert len(find_stack(encoder).layers()) == 3
    assert small.encode(SENTS).shape == (2, 32)
    # keeping every layer reproduces the teacher exactly
    np.testing.assert_allclose(ss.zoo.shrink(encoder, layers=3).encode(SENTS), encoder.encode(SENTS), atol=1e-6)


@pytest.mark.parametrize("config", [ss.DynamicInt8(backend="torch"), ss.StaticInt8(backend="torch")],
                         ids=["dynamic", "static"])
def test_int8_torch_backend(encoder, sts, config):
    from slimstack.quantize import QuantBertLayer
    from slimstack.quantize.backends.torch._transformer import fused_available

    q = ss.quantize(encoder, config, calibration=sts)
    fused = [m for m in q.model.modules() if isinstance(m, QuantBertLayer)]
    bert_layout = type(encoder.model).__name__ != "DistilBertModel"
    assert len(fused) == (3 if bert_layout and fused_available() else 0)
    assert len(q.record.quantized) >= 18  # every Linear of the 3 layers
    cos = float((q.model.encode(SENTS) * encoder.encode(SENTS)).sum(1).min())
    assert cos > 0.98


@pytest.fixture(scope="module")
def digits():
    return ss.datasets.load("digits", split="train", seed=0).subset(slice(0, 96))


@pytest.fixture(scope="module")
def vit():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=8,
                    patch_size=4, num_channels=1, num_labels=10)
    return ViTForImageClassification(cfg).eval()


@pytest.mark.parametrize("importance", ["l2", "taylor"])
def test_vit_heads_and_neurons(vit, digits, importance):
    x = torch.as_tensor(digits.X[:4])
    r = ss.prune(vit, ss.StructuredPruning(ratio=0.5, head_ratio=0.25, importance=importance, taylor_batches=1),
                 data=digits)
    layer = r.model.vit.layers[0]
    assert layer.attention.q_proj.out_features == 24 and layer.attention.o_proj.in_features == 24
    assert layer.mlp.fc1.out_features == 32 and vit.vit.layers[0].mlp.fc1.out_features == 64
    assert r.model(x).logits.shape == (4, 10)
    assert r.model.classifier.out_features == 10  # the head is not a unit


def test_vit_shrink_and_int8(vit, digits):
    x = torch.as_tensor(digits.X[:4])
    small = ss.zoo.shrink(vit, layers=2)
    assert len(small.vit.layers) == 2 and small.config.num_hidden_layers == 2 and len(vit.vit.layers) == 3
    assert small(x).logits.shape == (4, 10)
    q = ss.quantize(vit, ss.DynamicInt8(backend="torch"))
    assert len(q.record.quantized) >= 18
    torch.testing.assert_close(q.model(x).logits, vit(x).logits, atol=0.1, rtol=0.1)


def test_unknown_family_names_the_supported_ones(tokenizer):
    from transformers import AlbertConfig, AlbertModel

    model = AlbertModel(AlbertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64, embedding_size=16,
                                     num_hidden_layers=2, vocab_size=tokenizer.vocab_size))
    enc = ss.zoo.SentenceEncoder(model.eval(), tokenizer, max_length=16)
    with pytest.raises(ss.ModelError, match=r"model_type 'albert'.*supported: bert, camembert, distilbert, electra, "
                                            r"roberta, vit, xlm-roberta"):
        ss.prune(enc, ss.StructuredPruning(ratio=0.5))
    with pytest.raises(ss.ModelError, match=r"model_type 'albert'.*supported"):
        ss.zoo.shrink(model, layers=1)
