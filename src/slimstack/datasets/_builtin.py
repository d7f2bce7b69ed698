"""Built-in data sets, all offline: scikit-learn's toy sets and STS-B shipped with the package."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np

from ..errors import DataError
from ._dataset import Dataset
from ._split import split_indices

__all__ = ["BUILTIN", "load_builtin", "stsb_dir"]


def _sklearn(name: str, seed: int, split: str, test_size: float, val_size: float, **kw) -> Dataset:
    from sklearn import datasets as skd

    loader = {
        "digits": skd.load_digits,
        "breast_cancer": skd.load_breast_cancer,
        "wine": skd.load_wine,
        "iris": skd.load_iris,
    }[name]
    raw = loader()
    X = np.asarray(raw.data, dtype=np.float32)
    y = np.asarray(raw.target, dtype=np.int64)
    feature_names = [str(f) for f in raw.feature_names]
    if name == "digits":
        X = X / 16.0  # pixel values 0..16 -> 0..1
        if kw.get("images", True):
            X = X.reshape(-1, 1, 8, 8)
    ds = Dataset(
        name=name,
        task="classification",
        X=np.ascontiguousarray(X),
        y=y,
        feature_names=feature_names,
        classes=np.unique(y),
        meta={"source": f"sklearn.datasets.load_{name}", "target_names": [str(t) for t in raw.target_names]},
    )
    idx = split_indices(y, split, seed=seed, test_size=test_size, val_size=val_size, stratify=True)
    out = ds.subset(idx)
    return Dataset(**{**out.__dict__, "split": split})


def stsb_dir():
    return resources.files("slimstack.datasets") / "data" / "stsb"


def _read_stsb(file: str) -> tuple[list[tuple[str, str]], np.ndarray]:
    path = stsb_dir() / file
    pairs: list[tuple[str, str]] = []
    scores: list[float] = []
    with path.open(encoding="utf-8", newline="") as fh:
        # Quoting off: some sentences hold unbalanced double quotes that would merge rows.
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        s1, s2, sc = header.index("sentence1"), header.index("sentence2"), header.index("score")
        for row in reader:
            pairs.append((row[s1], row[s2]))
            scores.append(float(row[sc]))
    return pairs, np.asarray(scores, dtype=np.float32)


def _stsb(name: str, seed: int, split: str, test_size: float, val_size: float, **kw) -> Dataset:
    # STS-B ships train and dev; slimstack's "test" is STS-B dev (its labelled evaluation split).
    files = {"train": "train.tsv", "test": "dev.tsv", "dev": "dev.tsv", "validation": "dev.tsv"}
    if split == "all":
        p1, s1 = _read_stsb("train.tsv")
        p2, s2 = _read_stsb("dev.tsv")
        pairs, scores = p1 + p2, np.concatenate([s1, s2])
    elif split in files:
        pairs, scores = _read_stsb(files[split])
    else:
        raise DataError(f"stsb has splits 'train', 'test' (= STS-B dev), 'dev' and 'all', not {split!r}")
    return Dataset(
        name="stsb",
        task="sts",
        pairs=pairs,
        scores=scores,
        split=split,
        meta={"source": "STS Benchmark (GLUE), CC BY-SA 4.0; Cer et al. 2017", "score_range": [0, 5]},
    )


BUILTIN = {
    "digits": _sklearn,
    "breast_cancer": _sklearn,
    "wine": _sklearn,
    "iris": _sklearn,
    "stsb": _stsb,
}


def load_builtin(name: str, **kw) -> Dataset:
    return BUILTIN[name](name, **kw)
