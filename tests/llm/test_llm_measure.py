"""ss.measure/ss.compare on causal LMs: perplexity, KLD, top-1 agreement, decode/prefill speed, direction."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.llm import CausalLM
from slimstack.llm._measure import kld_top1

from .conftest import TEXT, make_config, make_tokenizer


def _lm(seed=0, layers=3):
    from transformers import LlamaForCausalLM

    tok = make_tokenizer()
    cfg = make_config("llama", len(tok), max_position_embeddings=1024, num_hidden_layers=layers)
    torch.manual_seed(seed)
    return CausalLM(LlamaForCausalLM(cfg).eval(), tok, name=f"tiny{seed}")


@pytest.fixture(scope="module")
def text_ds(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "notes.txt"
    path.write_text(TEXT)
    return ss.datasets.load(path, split="all", window=64)


def test_kld_top1_pure_function():
    rng = np.random.default_rng(0)
    a = torch.log_softmax(torch.as_tensor(rng.normal(size=(5, 7))), -1).numpy()
    kl, top = kld_top1(a, a)
    np.testing.assert_allclose(kl, 0, atol=1e-12) and top.all()
    b = torch.log_softmax(torch.as_tensor(rng.normal(size=(5, 7))), -1).numpy()
    kl, _ = kld_top1(a, b)
    want = (np.exp(a) * (a - b)).sum(1)
    np.testing.assert_allclose(kl, want, rtol=1e-10)


def test_compare_lm_quality_speed_and_direction(text_ds, monkeypatch):
    import slimstack.llm._measure as lm_measure

    monkeypatch.setattr(lm_measure, "DECODE_TOKENS", 8)  # tiny models: the same code path, shorter timings
    monkeypatch.setattr(lm_measure, "PREFILL_TOKENS", 64)
    ref = _lm(0)
    noisy = copy.deepcopy(ref)
    with torch.no_grad():
        for p in noisy.model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    c = ss.compare({"fp32": ref, "noisy": noisy}, text_ds, reference=ref, runs=1, warmup=0, threads=1)
    a, b = c["fp32"], c["noisy"]
    assert a.quality_metric == "perplexity" and a.higher_is_better is False
    windows = ss.datasets.token_windows(text_ds, ref)
    assert a.quality == pytest.approx(ref.perplexity(windows), rel=1e-5)
    assert a.metrics["tokens_scored"] == sum(len(w) - 1 for w in windows)
    assert a.metrics["kld"] == pytest.approx(0, abs=1e-9) and a.metrics["top1_agreement"] == 1.0
    assert b.metrics["kld"] > 1e-4 and b.metrics["top1_agreement"] < 1.0
    for m in (a, b):
        assert m.metrics["decode_tokens_per_s"] > 0 and m.metrics["prefill_tokens_per_s"] > 0
        assert m.metrics["ttft_ms"] > 0 and m.batch_size == 1
        assert m.size_bytes > 4 * sum(p.numel() for p in ref.model.parameters()) * 0.9
        assert m.peak_memory_bytes > 0 and m.params == sum(p.numel() for p in ref.model.parameters())
    text = c.table()
    assert "lower is better" in text and "KLD" in text and "noisy" in text
    rows = c.to_dict()["rows"]
    assert all(r["higher_is_better"] is False for r in rows)


def test_pareto_and_pick_best_know_lower_is_better():
    from slimstack.report import pareto_front, pick_best

    class R:
        objective, tolerance = "latency", 0.05

    rows = [{"name": "fp32", "quality": 40.0, "latency_ms": 10.0, "higher_is_better": False},
            {"name": "q4", "quality": 41.0, "latency_ms": 5.0, "higher_is_better": False},
            {"name": "bad", "quality": 80.0, "latency_ms": 6.0, "higher_is_better": False}]
    assert pareto_front(rows, "latency_ms") == ["fp32", "q4"]
    assert pick_best(rows, "fp32", 0.05, "latency")["name"] == "q4"
    assert pick_best(rows, "fp32", 0.01, "latency")["name"] == "fp32"


def test_measure_errors(text_ds):
    lm = _lm(0)
    with pytest.raises(ss.ModelError, match="not language models"):
        ss.compare({"lm": lm, "cnn": ss.zoo.digits_cnn()}, text_ds)
    other = _lm(0)
    other.tokenizer = make_tokenizer(vocab_size=300)
    with pytest.raises(ss.ModelError, match="tokenizes the text differently"):
        ss.compare({"a": lm, "b": other}, text_ds, cost=False)
    with pytest.raises(ss.DataError, match="causal LMs, measured on text"):
        ss.measure(lm, ss.datasets.load("iris", split="test"))
