"""Text datasets for LMs: files, the built-in held-out text, seeded splits, token windows."""

from __future__ import annotations

import json

import numpy as np
import pytest

import slimstack as ss
from slimstack.datasets import token_windows


def _notes(tmp_path, n=60):
    text = "\n\n".join(f"Paragraph {i}: the fox number {i} jumps over dog {i * 7}." for i in range(n))
    (tmp_path / "notes.txt").write_text(text)
    return tmp_path / "notes.txt"


def test_txt_splits_are_seeded_disjoint_and_cover_the_text(tmp_path):
    path = _notes(tmp_path)
    parts = {s: ss.datasets.load(path, split=s, seed=1) for s in ("train", "val", "test")}
    assert all(d.task == "lm" and len(d) > 0 for d in parts.values())
    blocks = [b for d in parts.values() for b in d.texts]
    assert len(blocks) == len(set(blocks)) == parts["train"].meta["blocks"]
    assert ss.datasets.load(path, split="test", seed=1).texts == parts["test"].texts
    assert ss.datasets.load(path, split="test", seed=2).texts != parts["test"].texts
    assert "\n\n".join(ss.datasets.load(path, split="all").texts) == path.read_text()


def test_jsonl_and_windows(tmp_path, tokenizer):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"body": f"The quick brown fox {i} jumps."}) for i in range(20)))
    ds = ss.datasets.load(path, split="all", text_field="body", window=8)
    wins = token_windows(ds, tokenizer)
    assert all(len(w) == 8 for w in wins[:-1]) and 2 <= len(wins[-1]) <= 8
    np.testing.assert_array_equal(np.concatenate(wins), tokenizer("\n\n".join(ds.texts))["input_ids"])
    assert len(token_windows(ds, tokenizer, window=16, max_windows=2)) == 2


def test_builtin_held_out_text_ships_with_its_license():
    from importlib import resources

    ds = ss.datasets.load("pytorch_readme", split="all")
    assert ds.task == "lm" and "PyTorch is a Python package" in ds.texts[0]
    folder = resources.files("slimstack.datasets") / "data" / "pytorch_readme"
    assert "BSD" in (folder / "SOURCE.md").read_text() or "license" in (folder / "SOURCE.md").read_text().lower()
    assert "Redistribution and use" in (folder / "LICENSE.txt").read_text()
    assert "pytorch_readme" in ss.datasets.names()


@pytest.mark.parametrize("content, kw, match", [
    ("", {}, "is empty"),
    ("   \n\n  ", {}, "is empty"),
    ("some text", {"window": 1}, "window=1 must be an integer >= 2"),
])
def test_bad_text_input(tmp_path, content, kw, match):
    (tmp_path / "t.txt").write_text(content)
    with pytest.raises(ss.DataError, match=match):
        ss.datasets.load(tmp_path / "t.txt", split="all", **kw)


def test_bad_jsonl_names_the_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "ok"}\n{"title": "no text"}\n')
    with pytest.raises(ss.DataError, match="line 2 has no string field 'text'"):
        ss.datasets.load(tmp_path / "d.jsonl", split="all")


def test_windows_need_an_lm_dataset(tokenizer):
    with pytest.raises(ss.DataError, match="token windows need a text dataset"):
        token_windows(ss.datasets.load("iris"), tokenizer)
