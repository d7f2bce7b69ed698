"""``encode`` tokenizes once, batches by token count and pads in NumPy (issue 13, item 9).

The pipeline must give what the pre-issue-13 one gave (one padded tokenizer call per batch,
batches sorted by characters, mask-product pooling), keep the caller's row order for every batch
size, and leave the caller's tokenizer as it was. Speed is measured by benchmarks/quantize.py.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.zoo._batching import length_batches, token_ids

TEXTS = ["A man is playing a flute.", "", "Zwei Hunde spielen im Schnee — très bien!", "a " * 200,
         "A dog runs.", "A dog runs.", "Two   spaces\tand a tab", "emoji 🙂 and CJK 漢字", "x", "A cat sleeps."]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ss.zoo.minilm_path()), local_files_only=True)


@pytest.fixture(scope="module")
def tiny(tokenizer):
    """A seeded 2-layer BERT (hidden 64) with MiniLM's tokenizer: the real code paths, in milliseconds."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=128)
    return ss.zoo.SentenceEncoder(BertModel(cfg, add_pooling_layer=False).eval(), tokenizer, max_length=48).eval()


@pytest.fixture(scope="module")
def sentences():
    ds = ss.datasets.load("stsb", split="test")
    return [s for p in ds.pairs[:60] for s in p] + TEXTS


def plain_encode(model, texts, batch_size=128):
    """The encode pipeline as shipped before issue 13 (the reference outputs must match)."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), model.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            tok = model.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=model.max_length, return_tensors="pt")
            if not isinstance(model, ss.zoo.SentenceEncoder):  # ONNX Runtime encoder
                feeds = {k: tok[k].numpy() for k in ("input_ids", "attention_mask")}
                out[idx] = model.run_feeds(feeds)
                continue
            hidden = model.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
            if model.pooling == "cls":
                emb = hidden[:, 0]
            else:
                m = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(emb, p=2, dim=-1).numpy()
    return out


@pytest.mark.parametrize("max_length", [8, 48, 128])
@pytest.mark.parametrize("side", ["right", "left"])
def test_tokenize_matches_the_tokenizers_own_padding(tokenizer, sentences, max_length, side):
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = side
    enc = ss.zoo.SentenceEncoder(torch.nn.Identity(), tok, max_length=max_length)
    for chunk in (sentences[:7], sentences[-10:], [TEXTS[1]], [TEXTS[3], TEXTS[8]]):
        ref = tok(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        got = enc.tokenize(chunk)
        assert torch.equal(got["input_ids"], ref["input_ids"]) and got["input_ids"].dtype == torch.int64
        assert torch.equal(got["attention_mask"], ref["attention_mask"])


def test_tokenizers_without_a_rust_backend_take_the_python_path(tokenizer, sentences):
    class PythonOnly:  # a tokenizer that is not "fast": only the __call__ interface
        is_fast = False
        pad_token_id, padding_side = tokenizer.pad_token_id, "right"

        def __call__(self, texts, **kw):
            return tokenizer(texts, **kw)

    assert token_ids(PythonOnly(), sentences, 16) == tokenizer(sentences, truncation=True, max_length=16)["input_ids"]


def test_batches_are_sorted_by_token_count_and_cover_every_row(tokenizer, sentences):
    seen, widths = [], []
    for idx, batch in length_batches(tokenizer, sentences, 48, 16):
        seen += list(idx)
        lengths = batch["attention_mask"].sum(1)
        assert int(lengths.max()) == batch["input_ids"].shape[1]  # each batch pads only to its own longest
        widths.append(batch["input_ids"].shape[1])
    assert sorted(seen) == list(range(len(sentences))) and widths == sorted(widths, reverse=True)
    ids = token_ids(tokenizer, sentences, 48)
    padded_now = sum(widths[i] * len(idx) for i, (idx, _) in enumerate(length_batches(tokenizer, sentences, 48, 16)))
    by_chars = np.argsort([-len(t) for t in sentences], kind="stable")
    padded_before = sum(max(len(ids[i]) for i in by_chars[s : s + 16]) * len(by_chars[s : s + 16])
                        for s in range(0, len(sentences), 16))
    assert padded_now <= padded_before


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_encode_gives_the_plain_pipelines_embeddings(tiny, sentences, pooling):
    enc = copy.copy(tiny)
    enc.pooling = pooling
    for bs in (1, 7, 32, 500):
        new, old = enc.encode(sentences, batch_size=bs), plain_encode(enc, sentences, batch_size=bs)
        assert new.shape == (len(sentences), 64) and new.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-5)
        assert float(np.min(np.sum(new * old, axis=1))) > 0.99999


def test_encode_keeps_the_callers_order(tiny, sentences):
    rng = np.random.default_rng(7)
    ref = tiny.encode(sentences, batch_size=9)
    for bs in (1, 4, 13, 1000):
        perm = rng.permutation(len(sentences))
        got = tiny.encode([sentences[i] for i in perm], batch_size=bs)
        np.testing.assert_allclose(got, ref[perm], atol=1e-5)
    singles = np.concatenate([tiny.encode(t) for t in sentences[:5]])
    np.testing.assert_allclose(singles, ref[:5], atol=1e-5)
    assert tiny.encode([]).shape == (0, 64)


def test_encode_leaves_the_tokenizer_and_training_mode_alone(tiny, sentences):
    rust = tiny.tokenizer._tokenizer
    rust.no_truncation()
    before = (rust.truncation, rust.padding, tiny.tokenizer.padding_side)
    tiny.train()
    try:
        tiny.encode(sentences[:20], batch_size=8)
        assert tiny.training
    finally:
        tiny.eval()
    assert (rust.truncation, rust.padding, tiny.tokenizer.padding_side) == before


@pytest.mark.parametrize("bad, error, match", [
    (0, ss.ConfigError, r"batch_size must be a positive integer, got 0"),
    (2.5, ss.ConfigError, r"got 2.5; pass e.g. batch_size=128"),
    (True, ss.ConfigError, r"got True"),
])
def test_bad_batch_size_is_named(tiny, bad, error, match):
    with pytest.raises(error, match=match):
        tiny.encode(["a", "b"], batch_size=bad)


def test_non_text_rows_are_named(tiny):
    with pytest.raises(ss.DataError, match=r"texts\[1\] is a NoneType \(None\).*pass a list of str"):
        tiny.encode(["fine", None])


@pytest.mark.slow
@pytest.mark.parametrize("config", [ss.StaticInt8(observer="mse", embedding_bits="mixed"), ss.DynamicInt8(),
                                    ss.DynamicInt8(backend="onnxruntime")], ids=lambda c: type(c).__name__)
def test_quantized_encoders_give_the_plain_pipelines_embeddings(tiny, sentences, config):
    q = ss.quantize(tiny, config, calibration=sentences[:64]).model
    new, old = q.encode(sentences, batch_size=32), plain_encode(q, sentences, batch_size=32)
    cos = np.sum(new * old, axis=1)
    # int8 rounding shifts with a batch's make-up (dynamic ranges, padded length), so rows may move a little.
    assert float(cos.mean()) > 0.999 and float(cos.min()) > 0.99
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-4)
