"""Deterministic train/val/test splits from a seed."""

from __future__ import annotations

import numpy as np

from ..errors import DataError

SPLITS = ("train", "val", "test", "trainval", "all")

__all__ = ["split_indices", "SPLITS"]


def split_indices(
    y: np.ndarray,
    split: str,
    *,
    seed: int = 0,
    test_size: float = 0.2,
    val_size: float = 0.2,
    stratify: bool = True,
) -> np.ndarray:
    """Row indices of ``split`` for targets ``y``.

    The rows are cut once per (seed, sizes) into test (``test_size``), val (``val_size``) and train
    (the rest), stratified by class when ``stratify`` and every class has enough rows. The same seed
    always gives the same rows, and the three splits never overlap.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    for label, v in (("test_size", test_size), ("val_size", val_size)):
        if not 0 <= v < 1:
            raise DataError(f"{label}={v} is outside [0, 1); pass a fraction such as 0.2")
    if test_size + val_size >= 1:
        raise DataError(f"test_size + val_size = {test_size + val_size} leaves no training rows; keep it below 1")
    n = len(y)
    if split == "all":
        return np.arange(n)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    groups = [np.arange(n)]
    if stratify:
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) <= max(2, n // 5) and counts.min() >= 3:
            groups = [np.flatnonzero(y == c) for c in classes]
    for g in groups:
        g = rng.permutation(g)
        n_test = int(round(len(g) * test_size))
        n_val = int(round(len(g) * val_size))
        parts["test"].append(g[:n_test])
        parts["val"].append(g[n_test : n_test + n_val])
        parts["train"].append(g[n_test + n_val :])
    out = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    if split == "trainval":
        return np.sort(np.concatenate([out["train"], out["val"]]))
    return out[split]
