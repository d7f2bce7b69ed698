"""``ss.measure.score``: a model's quality on a dataset, without timing; the one scoring function.

Every technique that needs a quality number (pruning's tolerance, quantization's fallback, the
distillation validation, merge's greedy soup, the recipe's checks) calls :func:`score`, and
``ss.measure``/``ss.compare`` score through the same functions here, so a metric means the same thing
in every verb and in ``ss.measure``. Tasks measured another way (causal LMs on task ``"lm"`` text)
register their comparer with :func:`register_task`; measure imports none of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from .._utils import any_grad_mode
from ..datasets import Dataset
from ..errors import DataError, ShapeError, unknown_name
from ._adapters import ModelAdapter, adapt
from ._labels import class_index, model_classes
from ._metrics import LOWER_IS_BETTER, PRIMARY_METRIC, classification_metrics, regression_metrics, sts_metrics

__all__ = ["score", "scores", "primary_metric", "higher_is_better", "register_task", "TaskComparer"]


@dataclasses.dataclass(frozen=True)
class TaskComparer:
    """How ``ss.compare`` measures a task it does not score itself (e.g. ``"lm"``, from slimstack.llm).

    ``compare(models, data, *, threads, warmup, runs, reference, quality, cost, progress) -> Comparison``;
    ``warmup``/``runs`` are the defaults used when the caller gives none.
    """

    task: str
    compare: Callable[..., Any]
    warmup: int = 3
    runs: int = 20


_TASKS: dict[str, TaskComparer] = {}


def register_task(task: str, compare: Callable[..., Any], *, warmup: int = 3, runs: int = 20) -> TaskComparer:
    """Let ``ss.measure``/``ss.compare``/``ss.measure.score`` measure datasets of ``task`` with ``compare``."""
    _TASKS[task] = TaskComparer(task, compare, warmup, runs)
    return _TASKS[task]


def task_comparer(task: str) -> TaskComparer | None:
    return _TASKS.get(task)


def primary_metric(data: Dataset, model: Any = None) -> str:
    """The metric ``ss.measure`` reports as quality for ``data`` (accuracy, r2, spearman, perplexity)."""
    if model is not None and data.task == "classification":
        with modes_kept([model]):  # adapting a module puts it in eval mode
            if adapt(model).output == "value":
                return "accuracy"
    return PRIMARY_METRIC.get(data.task, "accuracy")


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


@any_grad_mode
def scores(model: Any, data: Dataset | str, *, batch_size: int = 256, threads: int | None = None) -> dict[str, float]:
    """Every quality metric of ``model`` on ``data`` (as ``ss.measure(...).metrics``, without timing)."""
    data = as_dataset(data)
    with modes_kept([model]):
        other = task_comparer(data.task)
        if other is not None:
            c = other.compare({"model": model}, data, threads=threads, warmup=0, runs=1, reference=None,
                              quality=True, cost=False, progress=False)
            return c.measurements["model"].metrics
        a = adapt(model)
        return quality_metrics(a, model_outputs(a, model_inputs(data, {"m": a}), batch_size, threads), data)


def score(model: Any, data: Dataset | str, metric: str | None = None, *, batch_size: int = 256,
          threads: int | None = None) -> float:
    """``model``'s quality on ``data``: ``metric`` (default: the dataset's primary metric).

    Examples
    --------
    >>> ss.measure.score(model, ss.datasets.load("digits", split="test"))          # doctest: +SKIP
    0.97
    >>> ss.measure.score(model, ds, "log_loss")                                    # doctest: +SKIP
    """
    data = as_dataset(data)
    values = scores(model, data, batch_size=batch_size, threads=threads)
    metric = metric or primary_metric(data, model)
    if metric not in values:
        raise unknown_name(f"metric for task {data.task!r}", metric, values)
    return float(values[metric])


@contextlib.contextmanager
def modes_kept(models):
    """Scoring runs modules in eval mode; the caller's train/eval flags come back afterwards."""
    modules = [m for m in models if hasattr(m, "modules") and hasattr(m, "train")]
    flags = [[(sub, sub.training) for sub in m.modules()] for m in modules]
    try:
        yield
    finally:
        for pairs in flags:
            for sub, was in pairs:
                sub.training = was


def as_dataset(data: Dataset | str) -> Dataset:
    if isinstance(data, Dataset):
        ds = data
    elif isinstance(data, str):
        from ..datasets import load

        ds = load(data, split="test")
    else:
        raise DataError(f"data must be a slimstack Dataset or a built-in name, got {type(data).__name__}; "
                        "wrap arrays with ss.datasets.from_arrays(X, y)")
    if len(ds) == 0:
        raise DataError(f"dataset {ds.name!r} (split {ds.split!r}) is empty; pass at least one row")
    if ds.X is not None and not np.isfinite(ds.X).all():
        raise DataError(f"dataset {ds.name!r} has NaN or Inf in its features; impute or drop those rows first")
    return ds


def model_inputs(data: Dataset, adapters: dict[str, ModelAdapter]) -> Any:
    text = {a.text_input for a in adapters.values()}
    if len(text) > 1:
        raise DataError("ss.compare got both text and array models; compare models that take the same inputs")
    if text.pop():
        return data.sentences()
    if data.X is None:
        raise DataError(f"dataset {data.name!r} holds sentences, but the model takes arrays; "
                        "measure a sentence encoder on it, or pass an array dataset")
    return data.X


def model_outputs(adapter: ModelAdapter, inputs: Any, batch_size: int, threads: int | None) -> np.ndarray:
    parts: list[np.ndarray] = []
    n = len(inputs)
    order = np.arange(n)
    if adapter.text_input:  # length-sorted batches pad less; the order is restored below
        order = np.argsort([-len(s) for s in inputs], kind="stable")
    with adapter.threads(threads):
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            chunk = inputs[idx] if isinstance(inputs, np.ndarray) else [inputs[i] for i in idx]
            parts.append(adapter.to_numpy(adapter.run(adapter.prepare(chunk))))
    stacked = np.concatenate(parts)
    out = np.empty_like(stacked)
    out[order] = stacked
    return out


def quality_metrics(adapter: ModelAdapter, outputs: np.ndarray, data: Dataset) -> dict[str, float]:
    if data.task == "classification":
        kind = {"logits": "logits", "proba": "proba"}.get(adapter.output, "label")
        classes = model_classes(adapter)
        if classes is not None:  # columns (or predicted labels) are the model's classes_: match by label
            y = class_index(classes, data.labels)
            if kind == "label":
                outputs = class_index(classes, np.asarray(outputs).ravel(), missing=-2)
            elif outputs.ndim != 2 or outputs.shape[1] != len(classes):
                raise ShapeError(f"the model outputs shape {outputs.shape[1:]} per sample for its {len(classes)} "
                                 "classes_; pass a classifier whose predict_proba has one column per class")
            return classification_metrics(outputs, y, kind)
        need = int(np.max(data.y)) + 1 if len(data.y) else 0
        if kind != "label" and (outputs.ndim != 2 or outputs.shape[1] < need):
            raise ShapeError(f"the model outputs shape {outputs.shape[1:]} per sample, but {data.name!r} has "
                             f"class ids up to {need - 1} ({need} classes); pass a model with at least {need} outputs")
        return classification_metrics(outputs, data.y, kind)
    if data.task == "regression":
        return regression_metrics(outputs, data.y)
    if data.task == "sts":
        return sts_metrics(outputs, data.scores)
    return {}
