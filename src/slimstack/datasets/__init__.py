"""Built-in and user data sets: ``ss.datasets.load(name_or_path, split=..., seed=...)``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..errors import DataError, unknown_name
from ._builtin import BUILTIN, load_builtin
from ._dataset import Dataset, Task
from ._files import FILE_SUFFIXES, from_arrays, load_file
from ._split import SPLITS, split_indices
from ._text import TEXT_BUILTIN, TEXT_SUFFIXES, load_text, text_dataset, token_windows

__all__ = ["FILE_SUFFIXES", "Dataset", "load", "names", "from_arrays", "split_indices", "Task", "text_dataset", "token_windows"]


def names() -> list[str]:
    """The built-in data set names."""
    return sorted([*BUILTIN, *TEXT_BUILTIN])


def load(
    name: str | Path,
    split: str = "train",
    seed: int = 0,
    *,
    target: str | None = None,
    task: Task | None = None,
    test_size: float = 0.2,
    val_size: float = 0.2,
    images: bool = True,
    allow_nan: bool = False,
    window: int = 512,
    text_field: str = "text",
) -> Dataset:
    """Load a built-in data set or a user file, and return one split.

    Parameters
    ----------
    name : str or Path
        ``"digits"``, ``"breast_cancer"``, ``"wine"``, ``"iris"``, ``"stsb"``, or a path to a
        ``.csv``/``.tsv``/``.parquet``/``.npz`` file.
    split : {"train", "val", "test", "trainval", "all"}
        Rows are cut once per seed into test (``test_size``), val (``val_size``) and train (the
        rest), stratified by class. For ``"stsb"``, train and test are STS-B train and dev.
    seed : int
        The same seed always gives the same rows.
    target : str
        The target column of a user file (NPZ: the target array's name, default ``"y"``).
    images : bool
        Digits as (n, 1, 8, 8) images for CNNs (default) or as 64 columns.
    window, text_field : int, str
        Text for language models (``"pytorch_readme"``, a ``.txt``/``.md``/``.jsonl`` file whose
        records hold ``text_field``) gives a task ``"lm"`` dataset: splits are drawn over blocks of
        paragraphs, and :func:`token_windows` cuts ``window``-token windows per tokenizer.

    Examples
    --------
    >>> import slimstack as ss
    >>> ds = ss.datasets.load("digits", split="train", seed=0)
    >>> ds.X.shape[1:]
    (1, 8, 8)
    """
    key = str(name)
    if key in TEXT_BUILTIN or Path(key).suffix.lower() in TEXT_SUFFIXES:
        return load_text(key, split=split, seed=seed, test_size=test_size, val_size=val_size, window=window,
                         text_field=text_field)
    if key in BUILTIN:
        return load_builtin(key, seed=seed, split=split, test_size=test_size, val_size=val_size, images=images)
    path = Path(key)
    if path.suffix.lower() not in FILE_SUFFIXES and not path.exists():
        raise unknown_name("dataset", key, BUILTIN, fix=f"Or pass a path to a {'/'.join(FILE_SUFFIXES + TEXT_SUFFIXES)} file.")
    full = load_file(path, target=target, task=task, allow_nan=allow_nan)
    stratify = full.task == "classification"
    idx = split_indices(full.y, split, seed=seed, test_size=test_size, val_size=val_size, stratify=stratify)
    if len(idx) == 0:
        raise DataError(f"split {split!r} of {path.name} is empty ({len(full)} rows); use split='all' or more data")
    out = dataclasses.replace(full.subset(idx), split=split)
    if out.task == "classification" and split in ("train", "trainval") and len(np.unique(out.y)) < 2:
        only = out.labels[0].item() if hasattr(out.labels[0], "item") else out.labels[0]
        raise DataError(f"{path.name}: the {split} split's target {target or 'y'!r} holds the single class {only!r}; "
                        "a classifier needs at least two classes to train. Pass data with more classes, or "
                        "task='regression' if the target is a number")
    return out
