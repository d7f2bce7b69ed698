"""Text for language models: ``.txt``/``.jsonl`` files and a built-in held-out text, as task ``"lm"``.

A text dataset keeps its text (``ds.texts``: blocks of whole paragraphs, in file order); token
windows are cut per tokenizer by :func:`token_windows`, because every model family tokenizes
differently and models that share a tokenizer must see the very same windows. Splits are drawn
over the blocks, before tokenization, so train and test text never overlap whatever the tokenizer.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._dataset import Dataset
from ._split import split_indices

__all__ = ["TEXT_SUFFIXES", "TEXT_BUILTIN", "load_text", "token_windows", "text_dataset", "DEFAULT_WINDOW"]

TEXT_SUFFIXES = (".txt", ".md", ".jsonl")
TEXT_BUILTIN = {"pytorch_readme": "pytorch_readme/README.md"}
DEFAULT_WINDOW = 512
_BLOCKS = 50  # a file is cut into about this many blocks, so every split gets whole paragraphs


def _read_file(path: Path, text_field: str) -> list[str]:
    if not path.exists():
        raise DataError(f"text file {str(path)!r} does not exist; pass an existing .txt or .jsonl file")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {str(path)!r} as UTF-8 text ({exc})") from exc
    if path.suffix.lower() != ".jsonl":
        return [raw]
    docs = []
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path.name} line {i} is not JSON ({exc.msg}); write one JSON object per line") from exc
        if isinstance(rec, str):
            docs.append(rec)
        elif isinstance(rec, dict) and isinstance(rec.get(text_field), str):
            docs.append(rec[text_field])
        else:
            keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            raise DataError(f"{path.name} line {i} has no string field {text_field!r} (it has {keys}); "
                            f"pass text_field=... naming the field that holds the text")
    return docs


def _paragraphs(docs: list[str]) -> list[str]:
    paras = []
    for doc in docs:
        parts = [p for p in re.split(r"\n\s*\n", doc) if p.strip()]
        if len(parts) < 2:  # no blank lines: fall back to lines
            parts = [p for p in doc.splitlines() if p.strip()]
        paras.extend(parts)
    return paras


def _blocks(paras: list[str]) -> list[str]:
    """Merge consecutive paragraphs into about ``_BLOCKS`` blocks of similar length."""
    target = max(1, sum(len(p) for p in paras) // _BLOCKS)
    blocks, cur = [], []
    for p in paras:
        cur.append(p)
        if sum(len(c) for c in cur) >= target:
            blocks.append("\n\n".join(cur))
            cur = []
    if cur:
        blocks.append("\n\n".join(cur))
    return blocks


def text_dataset(docs: list[str], *, name: str, split: str = "all", seed: int = 0, test_size: float = 0.2,
                 val_size: float = 0.2, window: int = DEFAULT_WINDOW, source: str = "texts") -> Dataset:
    """A task-``"lm"`` dataset over ``docs`` (one split of its paragraph blocks)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise DataError(f"window={window!r} must be an integer >= 2 (tokens per window), e.g. 512")
    if not any(d.strip() for d in docs):
        raise DataError(f"text {name!r} is empty; pass a file with some text in it")
    blocks = _blocks(_paragraphs(docs))
    idx = split_indices(np.zeros(len(blocks)), split, seed=seed, test_size=test_size, val_size=val_size,
                        stratify=False)
    if len(idx) == 0:
        raise DataError(f"split {split!r} of {name!r} is empty (its text makes {len(blocks)} blocks); "
                        "use split='all' or a longer text")
    meta = {"source": source, "window": window, "blocks": len(blocks), "seed": seed}
    return Dataset(name=name, task="lm", texts=[blocks[i] for i in idx], split=split, meta=meta)


def load_text(name: str | Path, *, split: str = "all", seed: int = 0, test_size: float = 0.2, val_size: float = 0.2,
              window: int = DEFAULT_WINDOW, text_field: str = "text") -> Dataset:
    """A ``.txt``/``.md``/``.jsonl`` file or a built-in text (``"pytorch_readme"``) as a task-``"lm"`` dataset."""
    key = str(name)
    if key in TEXT_BUILTIN:
        ref = resources.files("slimstack.datasets") / "data" / TEXT_BUILTIN[key]
        docs, source = [ref.read_text(encoding="utf-8")], f"slimstack built-in {key} (see data/{key}/SOURCE.md)"
    else:
        path = Path(key)
        docs, source = _read_file(path, text_field), str(path)
        key = path.stem
    return text_dataset(docs, name=key, split=split, seed=seed, test_size=test_size, val_size=val_size,
                        window=window, source=source)


def _encode(tokenizer: Any, text: str) -> np.ndarray:
    if hasattr(tokenizer, "tokenize") and hasattr(tokenizer, "logprobs"):  # a CausalLM-like model
        return np.asarray(tokenizer.tokenize(text), dtype=np.int64)
    return np.asarray(tokenizer(text)["input_ids"], dtype=np.int64)


def token_windows(ds: Dataset, tokenizer: Any, window: int | None = None, max_windows: int | None = None
                  ) -> list[np.ndarray]:
    """Consecutive windows of ``window`` tokens (default ``ds.meta["window"]``) over the split's text.

    ``tokenizer`` is a transformers tokenizer or a model with ``tokenize`` (a :class:`CausalLM`).
    The text is tokenized as one stream (blocks joined by blank lines); the last, shorter window
    is kept when it holds at least two tokens. The same text and tokenizer always give the same windows.
    """
    if ds.task != "lm" or not ds.texts:
        raise DataError(f"dataset {ds.name!r} has task {ds.task!r}; token windows need a text dataset "
                        "(ss.datasets.load('notes.txt') or 'pytorch_readme')")
    window = int(window or ds.meta.get("window", DEFAULT_WINDOW))
    if window < 2:
        raise DataError(f"window={window} must be >= 2 tokens")
    ids = _encode(tokenizer, "\n\n".join(ds.texts))
    out = [ids[i : i + window] for i in range(0, len(ids), window)]
    out = [w for w in out if len(w) >= 2]
    if not out:
        raise DataError(f"dataset {ds.name!r} split {ds.split!r} tokenizes to {len(ids)} tokens; "
                        "an LM window needs at least 2")
    return out[:max_windows] if max_windows else out
