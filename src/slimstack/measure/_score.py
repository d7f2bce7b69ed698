"""``ss.measure.score``: a model's quality on a dataset, without timing; the one scoring function.

Every technique that needs a quality number (pruning's tolerance, quantization's fallback, the
distillation validation, merge's greedy soup, the recipe's checks) calls :func:`score`, so a metric
means the same thing in every verb and in ``ss.measure``.
"""

from __future__ import annotations

from typing import Any

from .._utils import any_grad_mode
from ..datasets import Dataset
from ..errors import unknown_name
from ._adapters import adapt
from ._metrics import LOWER_IS_BETTER, PRIMARY_METRIC

__all__ = ["score", "scores", "primary_metric", "higher_is_better"]


def primary_metric(data: Dataset, model: Any = None) -> str:
    """The metric ``ss.measure`` reports as quality for ``data`` (accuracy, r2, spearman, perplexity)."""
    if model is not None and data.task == "classification" and adapt(model).output == "value":
        return "accuracy"
    return PRIMARY_METRIC.get(data.task, "accuracy")


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


@any_grad_mode
def scores(model: Any, data: Dataset | str, *, batch_size: int = 256, threads: int | None = None) -> dict[str, float]:
    """Every quality metric of ``model`` on ``data`` (as ``ss.measure(...).metrics``, without timing)."""
    from ._measure import _as_dataset, _inputs, _modes_kept, _outputs, _quality

    data = _as_dataset(data)
    with _modes_kept([model]):
        if data.task == "lm":
            from ..llm._measure import compare_lm

            return compare_lm({"model": model}, data, threads=threads, warmup=0, runs=1, cost=False).measurements[
                "model"].metrics
        a = adapt(model)
        return _quality(a, _outputs(a, _inputs(data, {"m": a}), batch_size, threads), data)


def score(model: Any, data: Dataset | str, metric: str | None = None, *, batch_size: int = 256,
          threads: int | None = None) -> float:
    """``model``'s quality on ``data``: ``metric`` (default: the dataset's primary metric).

    Examples
    --------
    >>> ss.measure.score(model, ss.datasets.load("digits", split="test"))          # doctest: +SKIP
    0.97
    >>> ss.measure.score(model, ds, "log_loss")                                    # doctest: +SKIP
    """
    from ._measure import _as_dataset

    data = _as_dataset(data)
    values = scores(model, data, batch_size=batch_size, threads=threads)
    metric = metric or primary_metric(data, model)
    if metric not in values:
        raise unknown_name(f"metric for task {data.task!r}", metric, values)
    return float(values[metric])
