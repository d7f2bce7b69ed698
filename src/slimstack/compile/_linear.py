"""Logistic regressions (optionally behind a StandardScaler) as one float64 MatMul, fold copies stacked.

scikit-learn computes ``softmax(x @ coef.T + intercept)`` (``expit`` for two classes) in float64;
the graph does the same, with the scaler folded into the weights: ``((x - m) / s) @ W + b`` is
``x @ (W / s) + (b - (m / s) @ W)``. The fold copies of one member (fold-averaged stacking,
learned-weight voting) put their weight columns side by side, so k fold models cost one MatMul
and one softmax over a ``[N, k, classes]`` view, averaged over the folds.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ._errors import NotCompilable
from ._members import register_converter

__all__ = ["is_linear", "linear_folds_mean"]


def _parts(est):
    """(scaler or None, logistic regression) of a bare LR or a [StandardScaler,] LR pipeline; else None."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(est, LogisticRegression):
        return None, est
    if not isinstance(est, Pipeline):
        return None
    steps = [s for _, s in est.steps if s is not None and s != "passthrough"]
    if len(steps) == 1 and isinstance(steps[0], LogisticRegression):
        return None, steps[0]
    if len(steps) == 2 and isinstance(steps[0], StandardScaler) and isinstance(steps[1], LogisticRegression):
        return steps[0], steps[1]
    return None


def is_linear(est) -> bool:
    return _parts(est) is not None


def _affine(est) -> tuple[np.ndarray, np.ndarray]:
    """Weights [F, K'] and bias [K'] of the decision function on the raw input, the scaler folded in."""
    scaler, lr = _parts(est)
    W = np.asarray(lr.coef_, dtype=np.float64).T.copy()
    b = np.asarray(lr.intercept_, dtype=np.float64).reshape(-1).copy()
    if W.shape[1] != (1 if len(lr.classes_) == 2 else len(lr.classes_)):
        raise NotCompilable(f"{type(lr).__name__} with coef_ of shape {lr.coef_.shape} for {len(lr.classes_)} classes")
    if scaler is not None:
        scale = getattr(scaler, "scale_", None)
        mean = getattr(scaler, "mean_", None)
        if scaler.with_std and scale is not None:
            W = W / np.asarray(scale, dtype=np.float64)[:, None]
        if scaler.with_mean and mean is not None:
            b = b - np.asarray(mean, dtype=np.float64) @ W
    return W, b


def linear_folds_mean(g, models: list, x: str) -> str:
    """Mean of the fold models' probabilities (float32 [N, classes]), all folds in one MatMul."""
    k = len(models[0].classes_)
    width = 1 if k == 2 else k
    Ws, bs = zip(*(_affine(m) for m in models))
    z = g.op("Add", [g.op("MatMul", [x, g.const(np.concatenate(Ws, axis=1), "coef")]),
                     g.const(np.concatenate(bs), "intercept")], "dec")
    z = g.op("Reshape", [z, g.const(np.array([0, len(models), width], np.int64), "shape")], "dec3")
    if k == 2:
        p1 = g.op("Sigmoid", [z], "p1")
        p = g.op("Concat", [g.op("Sub", [g.const(np.ones((1, 1, 1))), p1]), p1], "p", axis=2)
    else:
        p = g.op("Softmax", [z], "p", axis=-1)
    mean = g.op("ReduceMean", [p, g.const(np.array([1], np.int64), "ax")], "lr_mean", keepdims=0)
    return g.op("Cast", [mean], "lr_f", to=TensorProto.FLOAT)


@register_converter(is_linear)
def _linear(g, est, x: str) -> str:
    return linear_folds_mean(g, [est], x)
