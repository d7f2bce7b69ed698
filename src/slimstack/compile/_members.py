"""Single fitted models as graph pieces: each converter adds the nodes for one model's probabilities.

``leaf_proba(g, est, x)`` returns the name of a float32 ``[N, len(est.classes_)]`` tensor, with
``x`` the double ``[N, F]`` input the model reads. Converters are tried in registration order
(first match wins); skl2onnx is the last resort and covers scikit-learn's linear models, SVMs,
MLPs, naive Bayes, gradient boosting and preprocessing pipelines. Forests, histogram gradient
boosting and k-nearest neighbours have converters of their own (see ``_trees.py`` and ``_knn``
below); slimstack's ``TorchClassifier`` is exported with the torch ONNX exporter and
``OnnxClassifier`` is spliced in as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto

from ._distances import sq_distances
from ._errors import NotCompilable
from ._svm import is_svc, svc_output, svc_proba
from ._trees import hgb_trees, sklearn_trees, tree_node

__all__ = ["leaf_proba", "leaf_output", "register_converter", "unwrap", "forests_mean", "hgb_folds_mean",
           "knn_folds_mean"]

_CONVERTERS: list[tuple[Callable[[Any], bool], Callable]] = []


def register_converter(match: Callable[[Any], bool]):
    """Add ``converter(g, est, x) -> proba name`` for estimators where ``match(est)`` is true."""

    def deco(fn):
        _CONVERTERS.append((match, fn))
        return fn

    return deco


def unwrap(est: Any) -> Any:
    """The fitted model inside ``ss.Frozen`` / ``FrozenEstimator``."""
    from sklearn.frozen import FrozenEstimator

    while isinstance(est, FrozenEstimator):
        est = est.estimator
    return est


def leaf_proba(g, est: Any, x: str) -> str:
    est = unwrap(est)
    for match, fn in _CONVERTERS:
        if match(est):
            return fn(g, est, x)
    return _skl2onnx(g, est, x)


def leaf_output(g, est: Any, x: str, method: str) -> str:
    """``predict_proba`` columns, ``decision_function`` scores, or one-hot ``predict`` labels."""
    est = unwrap(est)
    if method == "predict_proba":
        return leaf_proba(g, est, x)
    if method in ("predict", "decision_function") and _svc_inside(est):
        return _pipeline_prefix(g, est, x, lambda g2, last, x2: svc_output(g2, last, x2, method))
    if method == "predict":
        if not _argmax_safe(est):
            raise NotCompilable(f"predict of {type(est).__name__} is not the argmax of its probabilities")
        p = leaf_proba(g, est, x)
        return one_hot_argmax(g, p, len(est.classes_))
    if method == "decision_function":
        return _linear_decision(g, est, x)
    raise NotCompilable(f"member output {method!r}")


def one_hot_argmax(g, p: str, k: int) -> str:
    idx = g.op("ArgMax", [p], "argmax", axis=1, keepdims=0)
    eye = g.const(np.eye(k, dtype=np.float32), "eye")
    return g.op("Gather", [eye, idx], "onehot", axis=0)


def _argmax_safe(est) -> bool:
    from sklearn.pipeline import Pipeline

    if isinstance(est, Pipeline):
        return _argmax_safe(est.steps[-1][1])
    from sklearn.svm import SVC, NuSVC

    return not isinstance(est, SVC | NuSVC)


def _linear_decision(g, est, x: str) -> str:
    from sklearn.linear_model._base import LinearClassifierMixin

    if not isinstance(est, LinearClassifierMixin):
        raise NotCompilable(f"decision_function of {type(est).__name__} (only linear models compile it)")
    w = g.const(np.asarray(est.coef_, dtype=np.float64).T, "coef")
    b = g.const(np.asarray(est.intercept_, dtype=np.float64).reshape(-1), "intercept")
    z = g.op("Cast", [g.op("Add", [g.op("MatMul", [x, w]), b])], "dec", to=TensorProto.FLOAT)
    return z  # [N, 1] for binary models: the stacker keeps it as one column


# -- trees ---------------------------------------------------------------------------------------
def _is_forest(est) -> bool:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    return isinstance(est, RandomForestClassifier | ExtraTreesClassifier | DecisionTreeClassifier | ExtraTreeClassifier)


@register_converter(_is_forest)
def _forest(g, est, x: str) -> str:
    trees, _ = sklearn_trees(est)
    return g.op("Cast", [tree_node(g, _as_float32(g, x), trees, len(est.classes_))], "forest", to=TensorProto.FLOAT)


def _as_float32(g, x: str) -> str:
    """scikit-learn's trees compare float32(x) with float64 thresholds; so does the graph."""
    return g.op("Cast", [g.op("Cast", [x], to=TensorProto.FLOAT)], "x32", to=TensorProto.DOUBLE)


def forests_mean(g, models: list, x: str) -> str:
    """Fold copies of one forest as a single tree node whose leaves are pre-divided by the fold count."""
    trees = [t for m in models for t in sklearn_trees(m, 1.0 / len(models))[0]]
    return g.op("Cast", [tree_node(g, _as_float32(g, x), trees, len(models[0].classes_))], "forests",
                to=TensorProto.FLOAT)


def _is_hgb(est) -> bool:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return isinstance(est, HistGradientBoostingClassifier)


@register_converter(_is_hgb)
def _hgb(g, est, x: str) -> str:
    trees, base = hgb_trees(est)
    raw = g.op("Cast", [tree_node(g, x, trees, len(base), base=base)], "raw", to=TensorProto.FLOAT)
    return hgb_link(g, raw, len(base))


def hgb_link(g, raw: str, k: int) -> str:
    if k > 1:
        return g.op("Softmax", [raw], "hgb_proba", axis=-1)
    p = g.op("Sigmoid", [raw], "p1")
    return g.op("Concat", [g.op("Sub", [g.const(np.ones((1, 1), np.float32)), p]), p], "hgb_proba", axis=1)


def hgb_folds_mean(g, models: list, x: str) -> str:
    """Fold copies of one HGB model in one tree node (each fold's raw scores in its own targets)."""
    k = models[0].n_trees_per_iteration_
    trees, bases = [], []
    for f, m in enumerate(models):
        ts, base = hgb_trees(m)
        for t in ts:  # move this fold's targets to columns f*k .. f*k + k - 1
            v = np.zeros((len(t.values), k * len(models)))
            v[:, f * k:(f + 1) * k] = t.values
            t.values = v
        trees += ts
        bases.append(base)
    raw = g.op("Cast", [tree_node(g, x, trees, k * len(models), base=np.concatenate(bases))], "raw", to=TensorProto.FLOAT)
    raw = g.op("Reshape", [raw, g.const(np.array([0, len(models), k], np.int64), "shape")], "raw3")
    if k > 1:
        p = g.op("Softmax", [raw], "p", axis=-1)
    else:
        p1 = g.op("Sigmoid", [raw], "p1")
        p = g.op("Concat", [g.op("Sub", [g.const(np.ones((1, 1, 1), np.float32)), p1]), p1], "p", axis=2)
    return g.op("ReduceMean", [p, g.const(np.array([1], np.int64), "ax")], "hgb_mean", keepdims=0)


# -- k-nearest neighbours ------------------------------------------------------------------------
def _is_knn(est) -> bool:
    from sklearn.neighbors import KNeighborsClassifier

    return isinstance(est, KNeighborsClassifier)


def _knn_check(est) -> None:
    metric, p = est.effective_metric_, est.effective_metric_params_.get("p", 2)
    if not (metric == "euclidean" or (metric == "minkowski" and p == 2)):
        raise NotCompilable(f"KNeighborsClassifier(metric={est.metric!r}) (only euclidean distances compile)")
    if est.weights not in ("uniform", "distance") or np.ndim(est._y) != 1:
        raise NotCompilable(f"KNeighborsClassifier(weights={est.weights!r}) or multi-output targets")


def _knn_vote(g, est, d: str, labels: np.ndarray | None = None) -> str:
    """Neighbour vote (float64 [N, classes]) of ``est`` given squared distances ``d`` to rows labelled ``labels``

    (class indices; default ``est._y``, the labels of ``est._fit_X``)."""
    k = int(est.n_neighbors)
    n_classes = len(est.classes_)
    vals, idx = g.op("TopK", [d, g.const(np.array([k], np.int64), "k")], "topk", n_out=2, largest=0, sorted=1)
    labels = np.asarray(est._y) if labels is None else labels
    onehot = g.const(np.eye(n_classes, dtype=np.float64)[labels], "ylab")
    G = g.op("Gather", [onehot, idx], "nbr", axis=0)  # [N, k, classes]
    if est.weights == "uniform":  # counts by one small MatMul (ReduceMean over the middle axis is slower), then / k
        flat = g.op("Reshape", [G, g.const(np.array([-1, k * n_classes], np.int64), "shape")], "nbr_flat")
        counts = g.op("MatMul", [flat, g.const(np.tile(np.eye(n_classes), (k, 1)), "count")], "counts")
        return g.op("Div", [counts, g.const(np.float64(k), "k_f")], "knn")
    # 1 / distance; rows with an exact match use only the matches, as scikit-learn does
    dist = g.op("Sqrt", [g.op("Max", [vals, g.const(np.zeros(1), "z")])], "dist")
    zero = g.op("Cast", [g.op("Equal", [dist, g.const(np.zeros(1), "z")])], "iszero", to=TensorProto.DOUBLE)
    anyz = g.op("ReduceMax", [zero, g.const(np.array([1], np.int64), "ax")], "anyz", keepdims=1)
    inv = g.op("Reciprocal", [g.op("Max", [dist, g.const(np.full(1, 1e-300), "tiny")])], "inv")
    w = g.op("Where", [g.op("Cast", [anyz], to=TensorProto.BOOL), zero, inv], "w")
    s = g.op("ReduceSum", [g.op("Mul", [G, g.op("Unsqueeze", [w, g.const(np.array([2], np.int64))])]),
                           g.const(np.array([1], np.int64), "ax")], "wsum", keepdims=0)
    return g.op("Div", [s, g.op("ReduceSum", [s, g.const(np.array([1], np.int64), "ax")], keepdims=1)])


@register_converter(_is_knn)
def _knn(g, est, x: str) -> str:
    """Squared distances by one MatMul, TopK, then a mean of the neighbours' one-hot labels (in float64)."""
    _knn_check(est)
    d = sq_distances(g, x, np.asarray(est._fit_X, dtype=np.float64))[0]
    vote = _knn_vote(g, est, d)
    pf = g.op("Cast", [vote], "knn_f", to=TensorProto.FLOAT)
    if g.ctx is not None:  # a cascade routes on the float64 vote: 3/5 must not pass a threshold of 0.6 as 0.6000000238
        g.ctx.double[pf] = vote
    return pf


def knn_folds_mean(g, models: list, x: str) -> str:
    """Fold copies of one kNN sharing one distance MatMul; each fold masks out the rows it was not fitted on.

    The fold models' training rows are subsets of one training set, so the graph holds their union
    once (a row repeated within a fold keeps its repeats), in an order that keeps every fold's own
    row order, and computes every distance once. Each fold adds +inf to the columns of rows it
    lacks before its TopK, so ties break exactly as in the fold's own graph. Votes average in float64.
    Raises ``NotCompilable`` when no common order exists (the caller then builds one graph per fold).
    """
    for m in models:
        _knn_check(m)
    union, seqs = _union_rows([np.ascontiguousarray(m._fit_X, dtype=np.float64) for m in models])
    d_all = sq_distances(g, x, union)[0]
    votes = []
    for m, seq in zip(models, seqs):
        d = d_all
        if len(seq) < len(union):
            mask = np.full((1, len(union)), np.inf)
            mask[0, seq] = 0.0
            d = g.op("Add", [d_all, g.const(mask, "fold_mask")], "d_fold")
        labels = np.zeros(len(union), dtype=np.int64)  # masked columns are never among the k nearest
        labels[seq] = np.searchsorted(m.classes_, m.classes_[np.asarray(m._y)])
        votes.append(_knn_vote(g, m, d, labels))
    total = votes[0] if len(votes) == 1 else g.op("Sum", votes, "votes")
    mean = g.op("Mul", [total, g.const(np.float64(1.0 / len(votes)))], "knn_mean")
    return g.op("Cast", [mean], "knn_f", to=TensorProto.FLOAT)


def _union_rows(parts: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The multiset union of the row sets, ordered consistently with each part, and each part's columns in it."""
    import heapq

    ids: dict[tuple[bytes, int], int] = {}
    rows: list[np.ndarray] = []
    seqs = []
    for T in parts:
        seen: dict[bytes, int] = {}
        seq = np.empty(len(T), np.int64)
        for i, row in enumerate(T):
            key = row.tobytes()
            n = seen.get(key, 0)
            seen[key] = n + 1
            if (key, n) not in ids:
                ids[(key, n)] = len(rows)
                rows.append(row)
            seq[i] = ids[(key, n)]
        seqs.append(seq)
    n = len(rows)
    succ: list[set] = [set() for _ in range(n)]
    indeg = np.zeros(n, np.int64)
    for seq in seqs:
        for a, b in zip(seq[:-1], seq[1:]):
            if b not in succ[a]:
                succ[a].add(b)
                indeg[b] += 1
    heap = [i for i in range(n) if indeg[i] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(heap, j)
    if len(order) < n:
        raise NotCompilable("the fold models' training rows have no common order")
    pos = np.empty(n, np.int64)
    pos[np.asarray(order)] = np.arange(n)
    return np.stack([rows[i] for i in order]), [pos[s] for s in seqs]


@register_converter(is_svc)
def _svc(g, est, x: str) -> str:
    """RBF / linear / poly / sigmoid kernels as float64 GEMMs, libsvm's coupling in ORT (see ``_svm``)."""
    return svc_proba(g, est, x)


# -- pipelines whose last step has a converter of its own ----------------------------------------
def _custom_pipeline(est) -> bool:
    from sklearn.pipeline import Pipeline

    last = unwrap(est.steps[-1][1]) if isinstance(est, Pipeline) else None
    return last is not None and any(m(last) for m in (_is_forest, _is_hgb, _is_knn, is_svc))


@register_converter(_custom_pipeline)
def _pipeline(g, est, x: str) -> str:
    return _pipeline_prefix(g, est, x, leaf_proba)


def _pipeline_prefix(g, est, x: str, last_step) -> str:
    """``last_step(g, model, x)`` on ``x`` sent through the pipeline's transformers (``est`` itself if no pipeline)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(est, Pipeline):
        return last_step(g, est, x)
    for name, step in est.steps[:-1]:
        if step is None or step == "passthrough":
            continue
        if isinstance(step, StandardScaler):  # in float64, as scikit-learn computes it
            if step.with_mean:
                x = g.op("Sub", [x, g.const(np.asarray(step.mean_, np.float64), "mean")])
            if step.with_std:
                x = g.op("Div", [x, g.const(np.asarray(step.scale_, np.float64), "scale")])
            continue
        out = _skl2onnx_transform(g, step, x, name)
        x = g.op("Cast", [out], "xd", to=TensorProto.DOUBLE)
    return last_step(g, unwrap(est.steps[-1][1]), x)


def _svc_inside(est) -> bool:
    from sklearn.pipeline import Pipeline

    return is_svc(unwrap(est.steps[-1][1]) if isinstance(est, Pipeline) else est)


# -- slimstack's torch and ONNX members ---------------------------------------------------------
def _is_torch(est) -> bool:
    from ..ensemble import TorchClassifier

    return isinstance(est, TorchClassifier)


@register_converter(_is_torch)
def _torch(g, est, x: str) -> str:
    import torch

    from ..ensemble import module_to_onnx_bytes

    shape = tuple(est.input_shape) if est.input_shape is not None else (g.n_features,)
    example = torch.zeros((1, *shape), dtype=torch.float32)
    try:
        import onnx

        proto = onnx.load_model_from_string(module_to_onnx_bytes(est.module_, example))
        with torch.inference_mode():
            width = est.module_(example).reshape(1, -1).shape[1]
    except Exception as exc:  # the exporter's own message says which layer
        raise NotCompilable(f"torch.onnx.export failed: {str(exc).splitlines()[0][:200]}") from exc
    if width != len(est.classes_):
        raise NotCompilable(f"the module returns {width} column(s) for {len(est.classes_)} classes")
    xf = g.op("Cast", [x], "xf", to=TensorProto.FLOAT)
    if est.input_shape is not None:
        xf = g.op("Reshape", [xf, g.const(np.array([-1, *shape], np.int64), "shape")], "xr")
    out = g.splice(proto, [xf], "torch")[0]
    return _scores_to_proba(g, out, est.output, len(est.classes_))


def _is_onnx(est) -> bool:
    from ..ensemble import OnnxClassifier

    return isinstance(est, OnnxClassifier)


@register_converter(_is_onnx)
def _onnx_member(g, est, x: str) -> str:
    import onnx

    proto = onnx.load_model_from_string(est.model_bytes_)
    outs = proto.graph.output
    idx = est.output_index
    if idx is None:
        idx = next((i for i, o in enumerate(outs) if o.type.tensor_type.elem_type in
                    (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)), None)
        if idx is None:
            raise NotCompilable("the ONNX model has no float tensor output (a ZipMap output cannot be spliced)")
    xf = g.op("Cast", [x], "xf", to=TensorProto.FLOAT)
    if est.input_shape is not None:
        xf = g.op("Reshape", [xf, g.const(np.array([-1, *est.input_shape], np.int64), "shape")], "xr")
    out = g.splice(proto, [xf], "onnx")[idx]
    out = g.op("Cast", [out], "of", to=TensorProto.FLOAT)
    return _scores_to_proba(g, out, est.output, len(est.classes_))


def _scores_to_proba(g, out: str, kind: str, k: int) -> str:
    """As ``_PrefitBase._check_width``: softmax logits, renormalise probabilities; "auto" decides per batch.

    In float64, as the Python member computes them; the float32 result is returned and the float64
    one noted in ``g.ctx.double`` so that a cascade routes on the same values as in Python (a
    threshold such as 0.9999999994 separates rows that float32 rounds to 1.0 alike).
    """
    out = g.op("Cast", [out], "od", to=TensorProto.DOUBLE)
    soft = g.op("Softmax", [out], "soft", axis=1)
    norm = g.op("Div", [out, g.op("ReduceSum", [out, g.const(np.array([1], np.int64), "ax")], keepdims=1)], "norm")
    if kind == "logits":
        p = soft
    elif kind == "proba":
        p = norm
    else:
        nonneg = g.op("GreaterOrEqual", [g.op("ReduceMin", [out], keepdims=0), g.const(np.float64(0.0), "z")])
        dev = g.op("Abs", [g.op("Sub", [g.op("ReduceSum", [out, g.const(np.array([1], np.int64))], keepdims=1),
                                        g.const(np.float64(1.0))])])
        sums_one = g.op("LessOrEqual", [g.op("ReduceMax", [dev], keepdims=0), g.const(np.float64(1e-3 + 1e-5))])
        p = g.op("Where", [g.op("And", [nonneg, sums_one]), norm, soft], "auto_proba")
    pf = g.op("Cast", [p], "proba_f", to=TensorProto.FLOAT)
    if g.ctx is not None:
        g.ctx.double[pf] = p
    return pf


# -- skl2onnx, the general converter -----------------------------------------------------------------
def _skl2onnx_model(est, n_features: int):
    try:
        from skl2onnx import to_onnx
    except ImportError as exc:
        raise NotCompilable("skl2onnx is not installed (pip install skl2onnx)") from exc
    from ._graph import ML_OPSET, OPSET

    try:
        return to_onnx(est, np.zeros((1, n_features), np.float32), target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
                       options={"zipmap": False})
    except Exception as exc:  # skl2onnx raises many types; its message names the model part
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise NotCompilable(f"skl2onnx cannot convert {type(est).__name__}: {msg}") from exc


def _skl2onnx(g, est, x: str) -> str:
    if not hasattr(est, "predict_proba"):
        raise NotCompilable(f"{type(est).__name__} has no predict_proba")
    n = int(getattr(est, "n_features_in_", g.n_features))
    proto = _skl2onnx_model(est, n)
    outs = g.splice(proto, [g.op("Cast", [x], "xf", to=TensorProto.FLOAT)], "skl2onnx")
    names = [o.name for o in proto.graph.output]
    if "probabilities" not in names:
        raise NotCompilable(f"skl2onnx gave {type(est).__name__} no probabilities output (outputs: {names})")
    return outs[names.index("probabilities")]


def _skl2onnx_transform(g, step, x: str, name: str) -> str:
    n = int(getattr(step, "n_features_in_", 0)) or g.n_features
    proto = _skl2onnx_model(step, n)
    return g.splice(proto, [g.op("Cast", [x], "xf", to=TensorProto.FLOAT)], f"skl2onnx_{name}")[0]
