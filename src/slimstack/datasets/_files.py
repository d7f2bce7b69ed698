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
    non_numeric = [c for c in feats.columns if not np.issubdtype(feats[c].dtype, np.number)]
    if non_numeric:
        raise DataError(
            f"{path.name}: feature columns {non_numeric} are not numeric; encode them as numbers first"
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
    if task is None:
        task = "classification" if (y.dtype.kind in "iubOU" or (y.dtype.kind == "f" and np.all(y == np.round(y))
                                                             and len(np.unique(y)) <= 50)) else "regression"
    if task == "classification":
        classes, y_int = np.unique(y, return_inverse=True)
        return Dataset(name=name, task=task, X=X, y=y_int.astype(np.int64), classes=np.arange(len(classes)),
                       feature_names=feature_names, meta={"source": source, "target_names": [str(c) for c in classes]})
    return Dataset(name=name, task="regression", X=X, y=y.astype(np.float32), feature_names=feature_names,
                   meta={"source": source})
