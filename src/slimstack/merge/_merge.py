"""``ss.merge``: combine models that share an architecture into one model in weight space.

An output ensemble of five models costs five forward passes; a merged model costs one. Merging
works when the models sit in one basin of the loss, typically fine-tuned from a common start.
The rules are handlers in :mod:`._handlers`, one per config, dispatched through the merge registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._config import Config, Request
from .._utils import any_grad_mode
from ..errors import ConfigError, unknown_name
from ._configs import MergeConfig
from ._handlers import MERGERS, METHODS, NEEDS_BASE
from ._result import MergeResult

__all__ = ["merge", "METHODS"]

# Configs merging task vectors from a common ``base`` (the recipe's merge step reads this too).
_NEEDS_BASE = tuple(NEEDS_BASE)


@any_grad_mode
def merge(
    models: Sequence[Any],
    method: str | MergeConfig = "uniform",
    *,
    base: Any = None,
    val: Any = None,
    data: Any = None,
    scoring: Callable[[Any, Any, Any], float] | None = None,
    return_result: bool = False,
    **options: Any,
) -> Any:
    """Merge models of one architecture in weight space; return a new model of the same type.

    Parameters
    ----------
    models : sequence of torch.nn.Module or fitted sklearn MLPClassifier/MLPRegressor
        Same class, same parameter names and shapes (the first difference is reported).
    method : {"uniform", "greedy_soup", "task_arithmetic", "ties"} or a merge config
        A name builds the config with ``**options`` (e.g. ``method="ties", density=0.3``);
        or pass ``ss.TiesMerging(density=0.3)`` itself.
    base : model, optional
        The common starting point; required by ``task_arithmetic`` and ``ties``, refused by the soups.
    val : Dataset or (X, y), optional
        Validation data: required by ``greedy_soup``, used to pick the task-arithmetic scaling when
        it is None, and by ``batchnorm="recalibrate"``. ``data=`` is its older name.
    scoring : callable ``(model, X, y) -> float``, optional
        Validation score, higher is better. Default: ``ss.measure.score`` with the data's primary
        metric (accuracy for classification, R^2 for regression).
    return_result : bool
        Return a :class:`MergeResult` (model, one record per tensor, summary) instead of the model.

    Returns
    -------
    model, or MergeResult with ``return_result=True``
        A deep copy of the first model (of ``base`` for task arithmetic and TIES) carrying the
        merged weights. Inputs are never changed. ``model.merge_record_`` is the summary dict
        saying what was merged, how buffers were handled, and method details (greedy-soup scores
        and ingredients kept, chosen scaling, TIES sign conflicts).

    Examples
    --------
    >>> import torch, slimstack as ss
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> soup = ss.merge([a, b], "uniform")
    >>> bool(torch.allclose(soup.weight, (a.weight + b.weight) / 2))
    True
    """
    config = _resolve(method, options)
    if not isinstance(models, list | tuple) or len(models) == 0:
        raise ConfigError(f"ss.merge needs a non-empty list of models, got {type(models).__name__}")
    if data is not None and val is not None:
        raise ConfigError("ss.merge got both val= and data=; data= is the older name of val=, pass only val=")
    request = Request(val=val if val is not None else data, options={"base": base, "scoring": scoring})
    result: MergeResult = MERGERS.dispatch(config, models).run(list(models), config, request)
    return result if return_result else result.model


def _resolve(method: Any, options: dict[str, Any]) -> MergeConfig:
    if isinstance(method, Config):
        if not isinstance(method, MergeConfig):
            raise ConfigError(f"ss.merge takes a merge config, got {type(method).__name__} (kind {method.kind!r})")
        if options:
            raise ConfigError(f"pass options inside the config, not as keywords: got {sorted(options)} with "
                              f"{type(method).__name__}; use {type(method).__name__}({', '.join(options)}=...)")
        return method
    if method not in METHODS:
        raise unknown_name("merge method", str(method), METHODS)
    try:
        return METHODS[method](**options)
    except TypeError as exc:
        raise ConfigError(f"method={method!r} does not take {sorted(options)}: {exc}") from None
