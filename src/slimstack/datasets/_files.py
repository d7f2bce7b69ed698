"""User data from CSV, Parquet or NPZ files with a named target column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, close_matches
from ._dataset import Dataset, Task

__all__ = ["load_file", "FILE_SUFFIXES", "from_arrays"]

FILE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".npz")


def load_file(path: str | Path, *, target: str | None, task: Task | None = None, allow_nan: bool = False) -> Dataset:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist; pass a built-in name or an existing file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, target=target, task=task, allow_nan=allow_nan)
    if suffix not in FILE_SUFFIXES:
        raise DataError(f"cannot read {path.name!r}: supported data files are {', '.join(FILE_SUFFIXES)}")
    import pandas as pd

    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except Exception as exc:  # pandas raises many types for unreadable files
        raise DataError(f"cannot read data file {str(path)!r}: {exc}") from exc
    if target is None:
        raise DataError(
            f"{path.name}: name the target column with target=...; columns are: {', '.join(map(str, df.columns))}"
        )
    if target not in df.columns:
        raise DataError(
            f"{path.name} has no target column {target!r}.{close_matches(target, map(str, df.columns))} "
            f"Columns are: {', '.join(map(str, df.columns))}"
        )
    feats = df.drop(columns=[target])
    non_numeric = [str(c) for c in feats.columns if not pd.api.types.is_numeric_dtype(feats[c].dtype)]
    if non_numeric:
        example = feats[non_numeric[0]].dropna()
        raise DataError(
            f"{path.name}: feature columns {non_numeric} are not numeric (e.g. {non_numeric[0]!r} holds "
            f"{str(example.iloc[0])[:40]!r}); encode them as numbers first (one-hot or ordinal), or drop them"
        )
    X = feats.to_numpy(dtype=np.float32)
    return from_arrays(X, df[target].to_numpy(), name=path.stem, task=task, allow_nan=allow_nan,
                       feature_names=[str(c) for c in feats.columns], source=str(path))


def _load_npz(path: Path, *, target: str | None, task: Task | None, allow_nan: bool) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise DataError(f"{path.name}: holds object arrays, which need pickle; save plain numeric arrays") from exc
    except Exception as exc:
        raise DataError(f"cannot read NPZ file {str(path)!r}: {exc}") from exc
    target = target or "y"
    if "X" not in arrays or target not in arrays:
        raise DataError(
            f"{path.name}: an NPZ dataset needs arrays 'X' and {target!r} (target=...); it holds {sorted(arrays)}"
        )
    return from_arrays(arrays["X"], arrays[target], name=path.stem, task=task, allow_nan=allow_nan,
                       source=str(path))


def from_arrays(X, y, *, name: str = "arrays", task: Task | None = None, allow_nan: bool = False,
                feature_names=None, source: str = "arrays") -> Dataset:
    """Wrap numpy arrays as a :class:`Dataset`, checking for NaN and inferring the task."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if len(X) == 0:
        raise DataError(f"dataset {name!r} is empty; pass at least one row")
    if not allow_nan and not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X.reshape(len(X), -1)))[0]
        col = feature_names[bad[1]] if feature_names else int(bad[1])
        raise DataError(
            f"dataset {name!r}: NaN or Inf in the features (first at row {int(bad[0])}, column {col!r}); "
            "impute or drop those rows, or pass allow_nan=True for models that accept missing values"
        )
    _check_target(y, name)
    if task is None:
        task = "classification" if (y.dtype.kind in "iubOUT" or (y.dtype.kind == "f" and np.all(y == np.round(y))
                                                              and len(np.unique(y)) <= 50)) else "regression"
    if task == "classification":
        return _classification(X, y, name=name, feature_names=feature_names, source=source)
    return Dataset(name=name, task="regression", X=X, y=y.astype(np.float32), feature_names=feature_names,
                   meta={"source": source})


def _check_target(y: np.ndarray, name: str) -> None:
    if y.ndim != 1:
        raise DataError(f"dataset {name!r}: the target must be one column, got shape {y.shape}")
    missing = _missing(y)
    if missing.any():
        raise DataError(
            f"dataset {name!r}: the target has {int(missing.sum())} missing value(s) (first at row "
            f"{int(np.argmax(missing))}); drop those rows or fill them in, a target cannot be guessed"
        )


def _missing(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind == "f":
        return ~np.isfinite(y)
    if y.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and not np.isfinite(v)) for v in y], dtype=bool)
    return np.zeros(len(y), dtype=bool)


def _classification(X: np.ndarray, y: np.ndarray, *, name: str, feature_names, source: str) -> Dataset:
    """Keep the file's own labels: non-negative integers stay as they are (a model's output column j is
    class j); other labels (strings, negative numbers) become codes into ``classes``, which holds them."""
    if y.dtype.kind == "O":
        kinds = {type(v) for v in y}
        if len(kinds) > 1:
            y = y.astype(str)
    integral = y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(y == np.round(y)))
    if integral and (len(y) == 0 or y.min() >= 0):
        labels = y.astype(np.int64)
        return Dataset(name=name, task="classification", X=X, y=labels, classes=np.unique(labels),
                       feature_names=feature_names, meta={"source": source,
                                                          "target_names": [str(c) for c in np.unique(labels)]})
    classes, codes = np.unique(y, return_inverse=True)
    if integral:
        classes = classes.astype(np.int64)
    return Dataset(name=name, task="classification", X=X, y=codes.astype(np.int64), classes=classes,
                   feature_names=feature_names,
                   meta={"source": source, "target_names": [str(c) for c in classes], "label_codes": True})
