"""``ss.compile``: a fitted ensemble (or model) into one ONNX Runtime graph, plus its save format and measure adapter."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelError, NotFittedError
from ..io import register_format
from ..measure import ModelAdapter, register_adapter
from ._ensembles import node
from ._graph import Graph
from ._members import unwrap
from ._model import CompiledModel

__all__ = ["compile", "CompiledModel"]

FALLBACKS = ("python", "error")


@dataclass
class _Context:
    fallback: str
    merge_folds: bool = True
    record: list = field(default_factory=list)
    fallbacks: list = field(default_factory=list)
    double: dict = field(default_factory=dict)  # float32 output name -> the float64 tensor it was cast from
    distances: dict = field(default_factory=dict)  # distance tensors shared between members (_distances)


def compile(estimator: Any, *, threads: int | None = 1, fallback: str = "python",  # noqa: A001
            merge_folds: bool = True) -> CompiledModel:
    """Compile a fitted classifier or ensemble into one ONNX Runtime graph with the same predictions.

    Handles slimstack's ``VotingEnsemble``, ``EnsembleSelection``, ``StackingEnsemble`` (fold-averaged
    or refitted), ``Cascade`` (routing inside the graph: later stages run only on deferred rows,
    inside an ``If``), ``HierarchicalClassifier``, scikit-learn's ``VotingClassifier`` and
    ``StackingClassifier``, nested in any combination, and single models. Members: linear models,
    trees and forests, histogram gradient boosting, SVC, kNN, MLP, scikit-learn pipelines,
    ``TorchClassifier`` and ``OnnxClassifier``.

    Parameters
    ----------
    estimator : fitted classifier
        Never modified.
    threads : int or None, default 1
        ONNX Runtime intra-op threads, fixed when the session opens (1 suits single rows).
    fallback : {"python", "error"}
        A member no converter handles: "python" keeps it in Python (a ``CompileWarning`` and a
        ``record`` entry name it and the reason; the rest is compiled); "error" raises instead.

    Returns
    -------
    CompiledModel
        ``predict`` / ``predict_proba`` / ``classes_``; probabilities within 1e-5 of the source's.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> import numpy as np, slimstack as ss
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> vote = ss.VotingEnsemble([("lr", LogisticRegression(max_iter=5000)),
    ...                           ("rf", RandomForestClassifier(20, random_state=0))]).fit(X, y)
    >>> fast = ss.compile(vote)
    >>> bool(np.abs(fast.predict_proba(X) - vote.predict_proba(X)).max() < 1e-5)
    True
    """
    if fallback not in FALLBACKS:
        raise ConfigError(f"fallback={fallback!r} is not allowed; use 'python' (keep such members in Python) "
                          "or 'error' (raise).")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r} is not allowed; use None or an int >= 1.")
    est = unwrap(estimator)
    _check_fitted(est)
    if not hasattr(est, "classes_"):
        raise ModelError(f"ss.compile takes classifiers; {type(est).__name__} has no classes_ (regressors do not "
                         "compile yet: serve them in Python).")
    n_features = _n_features(est)
    t0 = time.perf_counter()
    g = Graph(n_features)
    if not isinstance(merge_folds, bool):
        raise ConfigError(f"merge_folds={merge_folds!r} is not allowed; use True (share work between fold copies) "
                          "or False (one subgraph per fold model).")
    g.ctx = ctx = _Context(fallback, merge_folds)
    proba = node(g, est, g.x, type(est).__name__)
    if not any(r.get("compiled") for r in ctx.record if "type" in r):
        reasons = "; ".join(f"{r['member']}: {r.get('reason')}" for r in ctx.record if not r.get("compiled"))
        raise ModelError(f"nothing in {type(est).__name__} could be compiled ({reasons}); serve it in Python.")
    proba = g.op("Identity", [proba], "probabilities")
    model = g.model(proba, len(est.classes_))
    hard = getattr(est, "voting", "soft") == "hard"
    ctx.record.insert(0, {"runtime": "onnxruntime", "graph_nodes": len(model.graph.node),
                          "compile_seconds": round(time.perf_counter() - t0, 3),
                          "float": "float64 input, tree thresholds, kNN distances, logistic regressions and "
                                   "torch/ONNX softmax; float32 elsewhere",
                          "tolerance": CompiledModel.tolerance})
    return CompiledModel(model.SerializeToString(), est.classes_, n_features=n_features, record=ctx.record,
                         allow_nan=_allow_nan(est), has_proba=not hard, fallbacks=ctx.fallbacks,
                         source=type(est).__name__, threads=threads)


def _check_fitted(est) -> None:
    from sklearn.exceptions import NotFittedError as SkNotFitted
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(est)
    except SkNotFitted as exc:
        raise NotFittedError(f"{type(est).__name__} is not fitted; call fit(X, y) before ss.compile.") from exc
    except TypeError as exc:
        raise ModelError(f"ss.compile takes a fitted scikit-learn-style classifier, got {type(est).__name__} "
                         f"({exc}).") from exc


def _n_features(est) -> int:
    for attr in ("n_features_in_",):
        with contextlib.suppress(AttributeError, NotFittedError):
            n = getattr(est, attr)
            if n is not None:
                return int(n)
    raise ModelError(f"{type(est).__name__} records no n_features_in_; fit it on a 2-D array first.")


def _allow_nan(est) -> bool:
    from sklearn.utils import get_tags

    try:
        return bool(get_tags(est).input_tags.allow_nan)
    except (TypeError, ValueError, AttributeError):
        return False


# -- ss.save / ss.load ------------------------------------------------------------------------------
@register_format("compiled")
class CompiledFormat:
    priority = 20
    saves = (CompiledModel,)

    @staticmethod
    def save(obj: CompiledModel, directory: Path) -> dict[str, Any]:
        return obj._save(directory)

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> CompiledModel:
        return CompiledModel._load(directory, spec, trusted)


# -- ss.measure ----------------------------------------------------------------------------------------
class CompiledAdapter(ModelAdapter):
    kind = "compiled"
    output = "proba"

    def __init__(self, model: CompiledModel):
        super().__init__(model)
        if not model.has_proba:
            self.output = "label"

    def prepare(self, inputs: Any) -> Any:
        x = np.asarray(inputs, dtype=np.float64)
        return x.reshape(len(x), -1)

    def run(self, prepared: Any) -> Any:
        return self.model.predict_proba(prepared) if self.output == "proba" else self.model.predict(prepared)

    @contextlib.contextmanager
    def threads(self, n: int | None):
        from .._utils import threads

        before = self.model.threads
        self.model.set_threads(n)
        try:
            with threads(n):  # for members that stay in Python
                yield
        finally:
            self.model.set_threads(before)

    def params(self) -> tuple[int, int]:
        import onnx
        from onnx import numpy_helper

        m = onnx.load_model_from_string(self.model.onnx_bytes)
        total = nonzero = 0
        for init in m.graph.initializer:
            a = numpy_helper.to_array(init)
            total += a.size
            nonzero += int(np.count_nonzero(a))
        return total, nonzero


def _compiled_factory(model: Any) -> ModelAdapter | None:
    return CompiledAdapter(model) if isinstance(model, CompiledModel) else None


register_adapter(_compiled_factory, priority=5)

