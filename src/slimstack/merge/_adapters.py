"""Models to state dicts and back: PyTorch modules and scikit-learn MLPs.

The merge rules in :mod:`._methods` see only ``dict[str, np.ndarray]``. This module extracts that
dict (with each entry's role: a learned parameter, a float buffer such as BatchNorm running
statistics, or a fixed entry such as ``num_batches_tracked``), checks that models share names and
shapes, and builds a new model of the template's type from a merged dict. Scores come from
``ss.measure.score``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import DataError, ModelError, ShapeError

__all__ = ["Weights", "extract", "check_compatible", "build", "make_evaluator", "recalibrate_batchnorm",
           "has_batchnorm", "as_xy", "as_dataset", "family_problem"]


@dataclasses.dataclass
class Weights:
    """One model's weights: float64 arrays by name, and which names are parameters or buffers."""

    family: str  # "torch" | "sklearn_mlp"
    arrays: dict[str, np.ndarray]
    params: list[str]  # learned weights: merged by the method's rule
    buffers: list[str]  # float buffers (BatchNorm running stats): averaged, or recalibrated on data
    fixed: list[str]  # non-float entries (num_batches_tracked): taken from the template
    shapes: dict[str, tuple[int, ...]]


def _family(model: Any) -> str:
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return "torch"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    if isinstance(model, MLPClassifier | MLPRegressor):
        if not hasattr(model, "coefs_"):
            raise ModelError(f"{type(model).__name__} is not fitted (no coefs_); fit it before merging")
        return "sklearn_mlp"
    raise ModelError(f"ss.merge takes torch.nn.Module or fitted sklearn MLPClassifier/MLPRegressor models, got "
                     f"{type(model).__name__}; wrap other models in an ensemble (ss.VotingEnsemble) instead")


def family_problem(model: Any) -> str | None:
    """Why ``model`` cannot be merged (its type, or not fitted), or None."""
    try:
        _family(model)
    except ModelError as exc:
        return str(exc)
    return None


def extract(model: Any) -> Weights:
    """The model's weights as float64 numpy arrays, with the role of every entry."""
    family = _family(model)
    if family == "torch":
        param_names = {n for n, _ in model.named_parameters()}
        arrays, params, buffers, fixed = {}, [], [], []
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                arrays[name] = t.detach().cpu().double().numpy().copy()
                (params if name in param_names else buffers).append(name)
            else:
                arrays[name] = t.detach().cpu().numpy().copy()
                fixed.append(name)
    else:
        arrays = {f"coefs_.{i}": np.array(w, dtype=np.float64) for i, w in enumerate(model.coefs_)}
        arrays.update({f"intercepts_.{i}": np.array(b, dtype=np.float64) for i, b in enumerate(model.intercepts_)})
        params, buffers, fixed = list(arrays), [], []
    return Weights(family, arrays, params, buffers, fixed, {k: tuple(v.shape) for k, v in arrays.items()})


def check_compatible(models: Sequence[Any], labels: Sequence[str]) -> list[Weights]:
    """Extract every model; raise on the first difference in type, names, shapes or classes."""
    weights = [extract(m) for m in models]
    ref, ref_label = weights[0], labels[0]
    for w, m, label in zip(weights[1:], models[1:], labels[1:]):
        if type(m) is not type(models[0]):
            raise ModelError(f"{label} is a {type(m).__name__} but {ref_label} is a {type(models[0]).__name__}; "
                             "merge only models of one architecture")
        for name in ref.arrays:
            if name not in w.arrays:
                raise ModelError(f"{label} has no parameter {name!r}, which {ref_label} has; merged models need the "
                                 "same parameter names (same architecture)")
        for name in w.arrays:
            if name not in ref.arrays:
                raise ModelError(f"{label} has a parameter {name!r} that {ref_label} lacks; merged models need the "
                                 "same parameter names (same architecture)")
        for name in ref.arrays:
            if w.shapes[name] != ref.shapes[name]:
                raise ShapeError(f"parameter {name!r} has shape {w.shapes[name]} in {label} but {ref.shapes[name]} "
                                 f"in {ref_label}; merged models need identical shapes")
        if ref.family == "sklearn_mlp":
            _check_mlp_meta(models[0], m, ref_label, label)
    return weights


def _check_mlp_meta(a: Any, b: Any, label_a: str, label_b: str) -> None:
    if hasattr(a, "classes_") and not np.array_equal(a.classes_, b.classes_):
        raise ModelError(f"{label_b} predicts classes {list(b.classes_)} but {label_a} predicts {list(a.classes_)}; "
                         "merge only MLPs fitted on the same labels")
    for attr in ("activation", "out_activation_"):
        if getattr(a, attr) != getattr(b, attr):
            raise ModelError(f"{label_b} has {attr}={getattr(b, attr)!r} but {label_a} has {getattr(a, attr)!r}; "
                             "merged MLPs need the same activations")


def build(template: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A deep copy of ``template`` carrying ``arrays`` (entries not in ``arrays`` stay as in the template)."""
    model = copy.deepcopy(template)
    if _family(template) == "torch":
        import torch

        state = model.state_dict()
        new = {k: (torch.as_tensor(arrays[k]).to(dtype=v.dtype, device=v.device) if k in arrays else v)
               for k, v in state.items()}
        model.load_state_dict(new, strict=True)
        return model
    n = len(template.coefs_)
    model.coefs_ = [arrays[f"coefs_.{i}"].astype(template.coefs_[i].dtype) for i in range(n)]
    model.intercepts_ = [arrays[f"intercepts_.{i}"].astype(template.intercepts_[i].dtype) for i in range(n)]
    return model


def as_xy(data: Any, family: str) -> tuple[Any, np.ndarray, bool]:
    """``(X, y, is_classification)`` from a slimstack Dataset or an ``(X, y)`` pair."""
    if hasattr(data, "X") and hasattr(data, "y") and hasattr(data, "task"):
        if data.X is None or data.y is None:
            raise DataError(f"merge needs a labelled array dataset for data=, got {data!r}")
        X, y, classify = data.X, np.asarray(data.y), data.task == "classification"
    elif isinstance(data, tuple | list) and len(data) == 2:
        X, y = data
        y = np.asarray(y)
        classify = y.dtype.kind in "biuUSO"
    else:
        raise DataError(f"data= must be a slimstack Dataset or an (X, y) pair, got {type(data).__name__}")
    X = np.asarray(X)
    if family == "sklearn_mlp" and X.ndim > 2:
        X = X.reshape(len(X), -1)
    if len(X) != len(y) or len(y) == 0:
        raise DataError(f"data= has {len(X)} inputs and {len(y)} targets; pass a non-empty set of equal length")
    return X, y, classify


def as_dataset(data: Any, family: str) -> Any:
    """A slimstack Dataset to score on: ``data`` itself, or an ``(X, y)`` pair wrapped."""
    from ..datasets import Dataset, from_arrays

    if isinstance(data, Dataset):
        as_xy(data, family)  # the same checks as for a pair
        return data
    X, y, classify = as_xy(data, family)
    return from_arrays(X, y, name="merge validation data", task="classification" if classify else "regression")


def make_evaluator(template: Any, data: Any, scoring: Callable[[Any, Any, Any], float] | None
                   ) -> Callable[[dict[str, np.ndarray]], float]:
    """A function from merged weights to a validation score (higher is better).

    Default score: ``ss.measure.score`` with the data's primary metric (accuracy for classification,
    R^2 for regression), so greedy-soup and scaling scores mean what ``ss.measure`` reports.
    """
    from ..measure import score

    family = _family(template)
    X, y, _ = as_xy(data, family)
    ds = None if scoring is not None else as_dataset(data, family)

    def evaluate(arrays: dict[str, np.ndarray]) -> float:
        model = build(template, arrays)
        if scoring is not None:
            return float(scoring(model, X, y))
        return score(model, ds)

    return evaluate


def has_batchnorm(model: Any) -> bool:
    if _family(model) != "torch":
        return False
    from torch.nn.modules.batchnorm import _BatchNorm

    return any(isinstance(m, _BatchNorm) for m in model.modules())


def recalibrate_batchnorm(model: Any, X: np.ndarray, batch_size: int = 256) -> int:
    """Recompute BatchNorm running statistics of ``model`` (in place) as averages over batches of ``X``.

    Averaging weights breaks the match between a layer's weights and the running statistics of the
    activations they produce; one forward pass over data restores it. Dropout stays in eval mode.
    Returns the number of BatchNorm layers reset.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
        bn.train()
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            model(torch.as_tensor(X[start:start + batch_size], dtype=torch.float32))
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.eval()
    return len(bns)
