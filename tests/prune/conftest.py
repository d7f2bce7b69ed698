"""Small seeded models and data for the pruning tests (each trains in about a second)."""

from __future__ import annotations

import os

import pytest
import torch

import slimstack as ss

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # the test machine is shared; one thread contends least


@pytest.fixture(scope="session")
def digits():
    return ss.datasets.load("digits", split="train", seed=0), ss.datasets.load("digits", split="test", seed=0)


@pytest.fixture(scope="session")
def cnn(digits):
    """A small trained CNN (accuracy about 0.95 on digits)."""
    return ss.zoo.train(ss.zoo.digits_cnn(channels=(16, 32), hidden=32), digits[0], epochs=3, seed=0)


@pytest.fixture(scope="session")
def resnet(digits):
    return ss.zoo.train(ss.zoo.digits_resnet(width=16, blocks=2), digits[0], epochs=1, seed=0)


@pytest.fixture(scope="session")
def encoder():
    """A 2-layer BERT (hidden 32, 4 heads, FFN 64) with MiniLM's tokenizer, seeded."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(str(ss.zoo.minilm_path()), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    return ss.zoo.SentenceEncoder(BertModel(cfg).eval(), tok, max_length=32).eval()


@pytest.fixture(scope="session")
def sts():
    return ss.datasets.load("stsb", split="train").subset(slice(0, 64))
