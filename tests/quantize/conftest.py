"""Small seeded models shared by the quantization tests (trained once per session)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import slimstack as ss

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def digits():
    return ss.datasets.load("digits", split="train", seed=0), ss.datasets.load("digits", split="test", seed=0)


@pytest.fixture(scope="session")
def mlp(digits):
    return ss.zoo.train(ss.zoo.digits_mlp(), digits[0], epochs=4, seed=0).eval()


@pytest.fixture(scope="session")
def cnn(digits):
    return ss.zoo.train(ss.zoo.digits_cnn(), digits[0], epochs=3, seed=0).eval()


@pytest.fixture(scope="session")
def tiny_encoder():
    """A randomly initialised 2-layer BERT (hidden 64) with MiniLM's tokenizer: the transformer code paths, fast."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=128)
    tok = AutoTokenizer.from_pretrained(str(ss.zoo.minilm_path()), local_files_only=True)
    return ss.zoo.SentenceEncoder(BertModel(cfg, add_pooling_layer=False).eval(), tok, max_length=32).eval()


@pytest.fixture(scope="session")
def sentences():
    ds = ss.datasets.load("stsb", split="test")
    return [s for p in ds.pairs[:40] for s in p]


@pytest.fixture
def snapshot():
    """``check = snapshot(model)``; later ``check()`` is True when the model's state and structure are unchanged."""

    def take(model: torch.nn.Module):
        saved = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
        structure = repr(model)

        def check() -> bool:
            now = model.state_dict()
            return (repr(model) == structure and set(now) == set(saved)
                    and all(np.array_equal(now[k].numpy(), v) for k, v in saved.items()))

        return check

    return take
