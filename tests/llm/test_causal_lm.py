"""CausalLM: generate, chat, logprobs, perplexity on tiny random models, and errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.llm import CausalLM

from .conftest import TEXT, make_hf_model


def test_logprobs_rows_are_next_token_distributions(tiny_llama):
    ids, lp = tiny_llama.logprobs(TEXT, max_tokens=40)
    assert ids.dtype == np.int64 and len(ids) == 40
    assert lp.shape == (40, tiny_llama.vocab_size) and lp.dtype == np.float32
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, rtol=1e-4)
    with torch.no_grad():
        logits = tiny_llama.model(torch.as_tensor(ids)[None]).logits[0]
    np.testing.assert_allclose(lp, torch.log_softmax(logits, -1).numpy(), atol=1e-5)
    # the same ids in give the same rows out
    ids2, lp2 = tiny_llama.logprobs(ids)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(lp, lp2, atol=1e-6)


def test_perplexity_is_token_weighted(tiny_llama):
    a, b = TEXT[:60], TEXT[:200]
    nll_a, n_a = tiny_llama.nll(a)
    nll_b, n_b = tiny_llama.nll(b)
    assert tiny_llama.perplexity([a, b]) == pytest.approx(np.exp((nll_a + nll_b) / (n_a + n_b)), rel=1e-6)
    ids, lp = tiny_llama.logprobs(a)
    manual = np.exp(-lp[np.arange(len(ids) - 1), ids[1:]].mean())
    assert tiny_llama.perplexity(a) == pytest.approx(manual, rel=1e-5)
    # a random model over a 320-token vocabulary sits near uniform
    assert 100 < tiny_llama.perplexity(TEXT) < 1000


def test_long_text_is_scored_in_context_windows(tiny_llama):
    long = TEXT * 3
    n = len(tiny_llama.tokenize(long))
    assert n > tiny_llama.context_length
    total, count = tiny_llama.nll(long)
    assert count == n - int(np.ceil(n / tiny_llama.context_length))
    assert np.isfinite(total)


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
def test_generate_greedy_matches_argmax_and_works_under_no_grad(family):
    model, tok = make_hf_model(family)
    lm = CausalLM(model, tok)
    ids = lm.generate_ids("The quick brown", max_new_tokens=5, ignore_eos=True)
    assert len(ids) == 5
    seq = list(lm.tokenize("The quick brown"))
    for want in ids:  # greedy: each new token is the argmax given the ones before it
        _, lp = lm.logprobs(seq)
        assert int(np.argmax(lp[-1])) == int(want)
        seq.append(int(want))
    with torch.no_grad():
        assert lm.generate("The quick brown", max_new_tokens=5, ignore_eos=True) == lm.decode(ids)
    with torch.inference_mode():
        assert isinstance(lm.generate("The quick brown", max_new_tokens=3), str)


def test_sampling_is_seeded(tiny_llama):
    a = tiny_llama.generate("A language", max_new_tokens=8, do_sample=True, temperature=1.5, seed=3, ignore_eos=True)
    b = tiny_llama.generate("A language", max_new_tokens=8, do_sample=True, temperature=1.5, seed=3, ignore_eos=True)
    c = tiny_llama.generate("A language", max_new_tokens=8, do_sample=True, temperature=1.5, seed=4, ignore_eos=True)
    assert a == b and a != c


def test_chat_uses_the_template(tiny_llama):
    msgs = [{"role": "user", "content": "Hello"}]
    ids = tiny_llama.chat_ids(msgs)
    assert tiny_llama.decode(ids).endswith("<|assistant|>") or "assistant" in tiny_llama.decode(ids)
    assert isinstance(tiny_llama.chat(msgs, max_new_tokens=4), str)


@pytest.mark.parametrize("call, match", [
    (lambda lm: lm.generate("fox " * 200, max_new_tokens=4), "longer than the model's context of 128"),
    (lambda lm: lm.generate("fox", max_new_tokens=0), "max_new_tokens=0 must be a positive integer"),
    (lambda lm: lm.generate("", max_new_tokens=2), "empty prompt"),
    (lambda lm: lm.logprobs("fox " * 200, max_tokens=500), "pass max_tokens <= 128"),
    (lambda lm: lm.logprobs(""), "empty text"),
    (lambda lm: lm.perplexity([""]), "at least one text"),
    (lambda lm: lm.generate("fox", do_sample=True, temperature=0), "temperature=0 must be > 0"),
    (lambda lm: lm.chat("hello"), "list of"),
])
def test_bad_input_errors(tiny_llama, call, match):
    with pytest.raises(ss.SlimstackError, match=match):
        call(tiny_llama)


def test_no_chat_template_is_a_clear_error():
    model, tok = make_hf_model("gpt2")
    tok.chat_template = None
    with pytest.raises(ss.ConfigError, match="no chat template"):
        CausalLM(model, tok).chat([{"role": "user", "content": "hi"}])
