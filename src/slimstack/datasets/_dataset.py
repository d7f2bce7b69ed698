"""The :class:`Dataset` container shared by every slimstack function."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from ..errors import DataError

__all__ = ["Dataset", "Task"]

Task = Literal["classification", "regression", "sts", "text", "lm"]


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Features and targets of one split.

    Tabular and image data fill ``X`` (float32) and ``y`` (int64 class ids for classification,
    float32 for regression). Sentence-pair data (STS-B) fill ``pairs`` and ``scores``; unlabelled
    sentences fill ``texts``.
    """

    name: str
    task: Task
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    pairs: list[tuple[str, str]] | None = None
    scores: np.ndarray | None = None
    texts: list[str] | None = None
    feature_names: list[str] | None = None
    classes: np.ndarray | None = None
    split: str = "all"
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task in ("classification", "regression"):
            if self.X is None or self.y is None:
                raise DataError(f"dataset {self.name!r}: a {self.task} dataset needs X and y")
            if len(self.X) != len(self.y):
                raise DataError(
                    f"dataset {self.name!r}: X has {len(self.X)} rows but y has {len(self.y)}; "
                    "pass features and targets of the same length"
                )
        if self.task == "sts" and (self.pairs is None or self.scores is None):
            raise DataError(f"dataset {self.name!r}: an 'sts' dataset needs pairs and scores")
        if self.task in ("text", "lm") and self.texts is None:
            raise DataError(f"dataset {self.name!r}: a 'text' dataset needs texts")

    def __len__(self) -> int:
        if self.X is not None:
            return len(self.X)
        if self.pairs is not None:
            return len(self.pairs)
        return len(self.texts or [])

    def __repr__(self) -> str:
        shape = f"X={tuple(self.X.shape)}" if self.X is not None else f"n={len(self)}"
        return f"Dataset({self.name!r}, split={self.split!r}, task={self.task!r}, {shape})"

    @property
    def n_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)

    @property
    def inputs(self) -> Any:
        """What a model takes: ``X`` for arrays, the list of sentences for text data."""
        if self.X is not None:
            return self.X
        return self.sentences()

    def sentences(self) -> list[str]:
        """Every sentence: both sides of each pair (in order), or ``texts``."""
        if self.pairs is not None:
            return [s for pair in self.pairs for s in pair]
        if self.texts is not None:
            return list(self.texts)
        raise DataError(f"dataset {self.name!r} holds no sentences (task={self.task!r})")

    def flat(self) -> Dataset:
        """The same data with each sample flattened to one row (e.g. digits images to 64 columns)."""
        if self.X is None or self.X.ndim == 2:
            return self
        return dataclasses.replace(self, X=self.X.reshape(len(self.X), -1))

    def subset(self, index: Any) -> Dataset:
        """Rows ``index`` (an int array, a boolean mask or a slice) as a new dataset."""
        kw: dict[str, Any] = {}
        if self.X is not None:
            kw["X"] = self.X[index]
            kw["y"] = self.y[index]
        if self.pairs is not None:
            idx = np.arange(len(self.pairs))[index]
            kw["pairs"] = [self.pairs[i] for i in idx]
            kw["scores"] = self.scores[idx]
        if self.texts is not None:
            idx = np.arange(len(self.texts))[index]
            kw["texts"] = [self.texts[i] for i in idx]
        return dataclasses.replace(self, **kw)

    def head(self, n: int) -> Dataset:
        return self.subset(slice(0, n))

    def as_text(self) -> Dataset:
        """Unlabelled sentences of a pair dataset (for distillation with a teacher as the target)."""
        return Dataset(name=self.name, task="text", texts=self.sentences(), split=self.split,
                       meta=dict(self.meta))
