"""Training rows for distillation: arrays or sentences, with or without labels.

The teacher supplies the targets, so labels are optional: a ``Dataset`` with labels adds the
hard-label loss, a bare array or a list of sentences trains on the teacher alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import torch

from ..datasets import Dataset
from ..errors import DataError

__all__ = ["Rows", "as_rows", "is_text_model", "tokenize"]


@dataclasses.dataclass
class Rows:
    """The training (or validation) rows: ``X`` (array inputs) or ``texts``, plus optional labels."""

    X: np.ndarray | None = None
    texts: list[str] | None = None
    labels: np.ndarray | None = None
    task: str | None = None  # "classification" | "regression" | None (unlabelled)
    dataset: Dataset | None = None

    def __len__(self) -> int:
        return len(self.X) if self.X is not None else len(self.texts or [])

    @property
    def is_text(self) -> bool:
        return self.texts is not None

    def raw(self, idx: np.ndarray | torch.Tensor) -> Any:
        """The rows ``idx`` as the model's user would pass them: an array slice or a list of strings."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.X is not None:
            return self.X[idx]
        return [self.texts[i] for i in idx]

    def label_tensor(self, idx: np.ndarray | torch.Tensor) -> torch.Tensor | None:
        if self.labels is None:
            return None
        dtype = torch.long if self.task == "classification" else torch.float32
        return torch.as_tensor(self.labels[np.asarray(idx, dtype=np.int64)], dtype=dtype)

    def content_hash(self) -> str:
        h = hashlib.sha256()
        if self.X is not None:
            h.update(str(self.X.shape).encode())
            h.update(np.ascontiguousarray(self.X, dtype=np.float32).tobytes())
        else:
            for t in self.texts:
                h.update(t.encode("utf-8"))
                h.update(b"\0")
        return h.hexdigest()


def as_rows(data: Any, name: str) -> Rows:
    """Turn a ``Dataset``, an array/tensor or a list of sentences into :class:`Rows`."""
    if data is None:
        raise DataError(f"ss.distill needs {name} data; pass a Dataset, an array of inputs or a list of sentences")
    if isinstance(data, Dataset):
        if data.X is not None:
            task = data.task if data.task in ("classification", "regression") else None
            rows = Rows(X=np.ascontiguousarray(data.X, dtype=np.float32), labels=data.y, task=task, dataset=data)
        elif data.task in ("sts", "text"):
            # Sentence pairs train as unlabelled sentences: the teacher's embeddings are the targets.
            rows = Rows(texts=data.sentences(), dataset=data)
        else:
            raise DataError(f"{name} dataset {data!r} holds neither arrays nor sentences")
    elif isinstance(data, torch.Tensor | np.ndarray):
        rows = Rows(X=np.ascontiguousarray(np.asarray(data), dtype=np.float32))
    elif isinstance(data, list | tuple) and all(isinstance(t, str) for t in data):
        rows = Rows(texts=list(data))
    else:
        raise DataError(
            f"ss.distill cannot use {name}={type(data).__name__}; pass a slimstack Dataset, a numpy array "
            "or tensor of inputs (unlabelled), or a list of sentences"
        )
    if len(rows) == 0:
        raise DataError(f"the {name} data is empty (0 rows); distillation needs at least one input row")
    if rows.X is not None and not np.isfinite(rows.X).all():
        bad = int((~np.isfinite(rows.X)).reshape(len(rows.X), -1).any(1).sum())
        raise DataError(f"the {name} data holds NaN or inf in {bad} rows; drop or impute them before ss.distill")
    return rows


def is_text_model(model: Any) -> bool:
    """Sentence encoders take token batches; slimstack's have ``tokenize`` and ``encode``."""
    return hasattr(model, "tokenize") and hasattr(model, "encode")


def tokenize(model: Any, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Tokenize for ``model``; ``max_length`` overrides the encoder's own (shorter = faster training)."""
    tok = getattr(model, "tokenizer", None)
    if max_length is None or tok is None:
        return model.tokenize(texts)
    enc = tok(list(texts), padding=True, truncation=True, max_length=int(max_length), return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
