"""``ss.merge``: combine models that share an architecture into one model in weight space.

An output ensemble of five models costs five forward passes; a merged model costs one. Merging
works when the models sit in one basin of the loss, typically fine-tuned from a common start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._utils import any_grad_mode
from .._config import Config, Registry
from ..errors import ConfigError, DataError, unknown_name
from . import _methods
from ._adapters import (
    Weights,
    as_xy,
    build,
    check_compatible,
    has_batchnorm,
    make_evaluator,
    recalibrate_batchnorm,
)
from ._configs import GreedySoup, MergeConfig, TaskArithmetic, TiesMerging, UniformSoup

__all__ = ["merge", "METHODS"]

METHODS: dict[str, type[MergeConfig]] = {
    "uniform": UniformSoup,
    "greedy_soup": GreedySoup,
    "task_arithmetic": TaskArithmetic,
    "ties": TiesMerging,
}
_NEEDS_BASE = (TaskArithmetic, TiesMerging)
_handlers = Registry("merge")


@any_grad_mode
def merge(
    models: Sequence[Any],
    method: str | MergeConfig = "uniform",
    *,
    base: Any = None,
    data: Any = None,
    scoring: Callable[[Any, Any, Any], float] | None = None,
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
    data : Dataset or (X, y), optional
        Validation data: required by ``greedy_soup``, used to pick the task-arithmetic scaling when
        it is None, and by ``batchnorm="recalibrate"``.
    scoring : callable ``(model, X, y) -> float``, optional
        Validation score, higher is better. Default: accuracy for classifiers, R^2 for sklearn
        regressors, negative MSE for torch regressors.

    Returns
    -------
    model
        A deep copy of the first model (of ``base`` for task arithmetic and TIES) carrying the
        merged weights. Inputs are never changed. ``model.merge_record_`` is a dict saying what
        was merged, how buffers were handled, and method details (greedy-soup scores and
        ingredients kept, chosen scaling, TIES sign conflicts).

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
    needs_base = isinstance(config, _NEEDS_BASE)
    name = type(config).__name__
    if needs_base and base is None:
        raise ConfigError(f"{name} needs base=: the model the others were fine-tuned from, since it merges their "
                          "differences from it (task vectors)")
    if not needs_base and base is not None:
        raise ConfigError(f"{name} does not use base=; drop it, or use method='task_arithmetic' or 'ties'")
    if isinstance(config, GreedySoup) and data is None:
        raise DataError("greedy_soup ranks and adds ingredients by validation score; pass data=(X_val, y_val) "
                        "or a Dataset")
    if config.batchnorm == "recalibrate" and data is None:
        raise DataError("batchnorm='recalibrate' recomputes BatchNorm statistics from data; pass data=")

    everything = ([base] if needs_base else []) + list(models)
    labels = (["base"] if needs_base else []) + [f"model {i}" for i in range(len(models))]
    weights = check_compatible(everything, labels)
    template = everything[0]
    base_w, model_w = (weights[0], weights[1:]) if needs_base else (None, weights)

    record: dict[str, Any] = {"method": name, "config": config.to_dict(), "n_models": len(models),
                              "family": model_w[0].family, "params_merged": len(model_w[0].params)}
    arrays = _handlers.lookup(config)(config, template, base_w, model_w, data, scoring, record)
    _buffers(arrays, model_w, record)
    merged = build(template, arrays)
    if config.batchnorm == "recalibrate":
        if has_batchnorm(merged):
            X, _, _ = as_xy(data, model_w[0].family)
            n = recalibrate_batchnorm(merged, X)
            record["batchnorm"] = f"running statistics of {n} BatchNorm layers recomputed on data ({len(X)} rows)"
        else:
            record["batchnorm"] = "recalibrate asked, but the model has no BatchNorm layers: nothing to do"
    merged.merge_record_ = record
    return merged


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


def _buffers(arrays: dict[str, np.ndarray], model_w: Sequence[Weights], record: dict[str, Any]) -> None:
    """Float buffers are averaged over the merged models; fixed entries come from the template."""
    kept = record.get("greedy_soup", {}).get("kept", range(len(model_w)))
    for name in model_w[0].buffers:
        arrays[name] = np.mean([model_w[i].arrays[name] for i in kept], axis=0)
    if model_w[0].buffers:
        record["batchnorm"] = f"{len(model_w[0].buffers)} float buffers averaged over the merged models"
    if model_w[0].fixed:
        record["fixed_from_template"] = list(model_w[0].fixed)


@_handlers.register(UniformSoup)
def _uniform(config, template, base_w, model_w, data, scoring, record):
    return _methods.uniform_soup([w.arrays for w in model_w], model_w[0].params)


@_handlers.register(GreedySoup)
def _greedy(config, template, base_w, model_w, data, scoring, record):
    keys = model_w[0].params + model_w[0].buffers  # buffers follow their ingredients while scoring
    evaluate = make_evaluator(template, data, scoring)
    full = {**model_w[0].arrays}
    soup, info = _methods.greedy_soup([w.arrays for w in model_w], lambda s: evaluate({**full, **s}), keys)
    record["greedy_soup"] = info
    return {k: soup[k] for k in model_w[0].params}


@_handlers.register(TaskArithmetic)
def _task_arithmetic(config, template, base_w, model_w, data, scoring, record):
    states, keys = [w.arrays for w in model_w], model_w[0].params
    if config.scaling is not None:
        scaling, how = float(config.scaling), "given"
    elif data is None:
        scaling, how = 1.0 / len(model_w), "1/n_models (no data= to tune it on)"
    else:
        evaluate = make_evaluator(template, data, scoring)
        buffers = _methods.uniform_soup(states, model_w[0].buffers) if model_w[0].buffers else {}
        scores = {s: evaluate({**base_w.arrays, **buffers, **_methods.task_arithmetic(base_w.arrays, states, s, keys)})
                  for s in config.scaling_grid}
        scaling = max(scores, key=lambda s: (scores[s], -s))
        how = "best on data"
        record["scaling_scores"] = {str(s): v for s, v in scores.items()}
    record["scaling"] = scaling
    record["scaling_chosen"] = how
    return _methods.task_arithmetic(base_w.arrays, states, scaling, keys)


@_handlers.register(TiesMerging)
def _ties(config, template, base_w, model_w, data, scoring, record):
    merged, info = _methods.ties_merge(base_w.arrays, [w.arrays for w in model_w], config.density, config.scaling,
                                       model_w[0].params)
    record["ties"] = info
    return merged
