"""Turn the caller's data (a Dataset, an array, sentences) into model-ready batches, checked on entry.

Calibration, accuracy-aware fallback and backend timing all feed the same batches, so every backend
is judged on identical inputs: token batches for sentence encoders (sorted by length, as
``SentenceEncoder.encode`` does), float tensors for array models.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .._arch import is_encoder
from ..datasets import Dataset
from ..errors import DataError, ShapeError

__all__ = ["as_inputs", "batches", "check_runs"]


def as_inputs(data: Any, model: Any, *, what: str, limit: int | None = None) -> np.ndarray | list[str]:
    """Sentences (for encoders) or a float32 array, at most ``limit`` rows; raises on empty or non-finite data."""
    if isinstance(data, Dataset):
        raw: Any = data.sentences() if is_encoder(model) else data.X
        if raw is None:
            raise DataError(f"{what} {data.name!r} holds no {'sentences' if is_encoder(model) else 'features X'} "
                            f"for this {'encoder' if is_encoder(model) else 'array model'}; pass matching data")
    elif isinstance(data, torch.Tensor):
        raw = data.detach().cpu().numpy()
    elif isinstance(data, str):
        raw = [data]
    else:
        raw = data
    if raw is None or len(raw) == 0:
        raise DataError(f"the {what} set is empty; pass at least one sample (e.g. a few hundred training rows)")
    if is_encoder(model):
        if not all(isinstance(t, str) for t in raw):
            raise DataError(f"the {what} set for a sentence encoder must be sentences (str), got "
                            f"{type(raw[0]).__name__}; pass a list of str or an 'sts'/'text' Dataset")
        texts = list(raw)
        return texts[:limit] if limit else texts
    arr = np.asarray(raw)
    if arr.dtype.kind not in "fiub":
        raise DataError(f"the {what} set must be numeric, got dtype {arr.dtype}; pass a float array or a Dataset")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).reshape(len(arr), -1).any(axis=1).sum())
        raise DataError(f"the {what} set has NaN or Inf in {bad} of {len(arr)} rows; drop or impute them first")
    return arr[:limit] if limit else arr


def batches(model: Any, inputs: np.ndarray | list[str], batch_size: int = 128) -> Iterator[tuple[np.ndarray, Any]]:
    """Yield ``(row indices, batch)``; a batch is a token dict for encoders, else a float tensor."""
    n = len(inputs)
    if is_encoder(model):
        order = np.argsort([-len(t) for t in inputs], kind="stable")
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            yield idx, dict(model.tokenize([inputs[i] for i in idx]))
    else:
        for s in range(0, n, batch_size):
            idx = np.arange(s, min(n, s + batch_size))
            yield idx, torch.from_numpy(np.ascontiguousarray(inputs[idx]))


def call(model: Any, batch: Any) -> Any:
    return model(**batch) if isinstance(batch, dict) else model(batch)


def check_runs(model: torch.nn.Module, inputs: np.ndarray | list[str], what: str) -> None:
    """Run one sample; a shape mismatch becomes a ShapeError that names the shapes."""
    _, batch = next(batches(model, inputs[:2] if isinstance(inputs, list) else inputs[:2], 2))
    try:
        with torch.inference_mode():
            call(model, batch)
    except (RuntimeError, ValueError, IndexError) as exc:
        shape = tuple(inputs.shape[1:]) if isinstance(inputs, np.ndarray) else "sentences"
        raise ShapeError(f"the {what} samples have shape {shape}, which the model cannot take "
                         f"({str(exc).splitlines()[0]}); pass samples shaped like the model's training inputs "
                         "(digits images are (n, 1, 8, 8); use ds.flat() for an MLP on (n, 64))") from exc
