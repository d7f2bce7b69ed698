"""Combiners in the graph: voting, selection, stacking (slimstack's and scikit-learn's), cascades, hierarchies.

``node(g, est, x)`` adds the nodes computing ``est``'s probabilities (or, for hard voting, its
weighted vote shares) over ``est.classes_`` and returns the tensor's name. A member that no
converter handles is fed from Python through a graph input (``Graph.python_input``) and named in
the record; the rest is still compiled.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto

from ..errors import ModelError
from ._errors import CompileWarning, NotCompilable
from ._linear import is_linear, linear_folds_mean
from ._members import forests_mean, hgb_folds_mean, knn_folds_mean, leaf_output, one_hot_argmax, unwrap

__all__ = ["node", "register_combiner", "ensemble_types"]

_COMBINERS: list[tuple[Callable[[Any], bool], Callable]] = []
_EPS = 1e-12  # as slimstack.ensemble._weights


def register_combiner(match: Callable[[Any], bool]):
    def deco(fn):
        _COMBINERS.append((match, fn))
        return fn

    return deco


def ensemble_types(est) -> bool:
    return any(m(unwrap(est)) for m, _ in _COMBINERS)


def node(g, est: Any, x: str, path: str = "model", method: str = "predict_proba") -> str:
    """Probabilities (or one-hot labels / scores for ``method``) of any fitted model, ensembles included."""
    est = unwrap(est)
    for match, fn in _COMBINERS:
        if match(est):
            out = fn(g, est, x, path)
            if method == "predict_proba":
                return out
            if method == "predict":
                return one_hot_argmax(g, out, len(est.classes_))
            raise NotCompilable(f"{method} of a nested {type(est).__name__}")
    return _leaf(g, est, x, path, method)


def _leaf(g, est, x: str, path: str, method: str) -> str:
    ctx = g.ctx
    try:
        out = leaf_output(g, est, x, method)
        ctx.record.append({"member": path, "type": type(est).__name__, "compiled": True, "method": method})
        return out
    except NotCompilable as exc:
        reason = str(exc)
    if ctx.fallback == "error":
        raise ModelError(f"member {path!r} ({type(est).__name__}) cannot be compiled: {reason}. Pass "
                         "fallback='python' to keep it in Python and compile the rest.")
    warnings.warn(CompileWarning(f"member {path!r} ({type(est).__name__}) stays in Python: {reason}"), stacklevel=4)
    width = _width(est, method, g)
    name = g.python_input(width, path.replace("/", "_"))
    ctx.fallbacks.append({"input": g.python_inputs[-1][0], "estimator": est, "method": method, "path": path})
    ctx.record.append({"member": path, "type": type(est).__name__, "compiled": False, "method": method,
                       "reason": reason})
    return name


def _width(est, method: str, g) -> int:
    if method in ("predict_proba", "predict"):
        return len(est.classes_)
    coef = getattr(est, "coef_", None)
    if coef is not None:
        return int(np.shape(coef)[0])
    k = len(est.classes_)
    return 1 if k == 2 else k


def _align(g, p: str, est_classes, classes, by_index: bool = False) -> str:
    """Columns of ``est_classes`` placed at their positions in ``classes`` (missing classes get zeros)."""
    est_classes = np.asarray(est_classes)
    pos = est_classes.astype(int) if by_index else np.searchsorted(classes, est_classes)
    if len(est_classes) == len(classes) and np.array_equal(pos, np.arange(len(classes))):
        return p
    m = np.zeros((len(est_classes), len(classes)), np.float32)
    m[np.arange(len(est_classes)), pos] = 1.0
    return g.op("MatMul", [p, g.const(m, "align")], "aligned")


def _mean(g, outs: list[str]) -> str:
    if len(outs) == 1:
        return outs[0]
    total = g.op("Sum", outs, "sum")
    return g.op("Mul", [total, g.const(np.float32(1.0 / len(outs)))], "mean")


def _fit_output(g, fit, x: str, method: str, classes, path: str) -> str:
    """A ``MemberFit``'s output as ``MemberFit.output`` computes it: fold models averaged (labels voted)."""
    models = [unwrap(m) for m in fit.models]
    if method == "predict_proba" and len(models) > 1 and all(np.array_equal(m.classes_, models[0].classes_)
                                                           for m in models):
        kind = _same_kind(models) if g.ctx.merge_folds else None
        if kind is not None:
            try:
                p = _FOLD_MERGERS[kind](g, models, x)
                g.ctx.record.append({"member": path, "type": type(models[0]).__name__, "compiled": True,
                                     "method": method, "note": f"{len(models)} fold models {_FOLD_NOTES[kind]}"})
                return _align(g, p, models[0].classes_, classes)
            except NotCompilable as exc:  # each fold model on its own below
                g.ctx.record.append({"member": path, "compiled": True, "note": f"fold models not merged: {exc}"})
    outs = []
    for i, m in enumerate(models):
        sub = f"{path}/fold{i}" if len(models) > 1 else path
        o = node(g, m, x, sub, method)
        if method != "decision_function":
            o = _align(g, o, m.classes_, classes)
        outs.append(o)
    if method == "predict" and len(outs) > 1:  # labels do not average: majority of the fold labels
        return one_hot_argmax(g, g.op("Sum", outs, "votes"), len(classes))
    return _mean(g, outs)


_FOLD_MERGERS = {"forest": forests_mean, "hgb": hgb_folds_mean, "knn": knn_folds_mean, "linear": linear_folds_mean}
_FOLD_NOTES = {"forest": "in one tree node", "hgb": "in one tree node", "knn": "sharing one distance MatMul",
               "linear": "in one MatMul (scalers folded into the weights)"}


def _same_kind(models) -> str | None:
    """Which fold-merged form fits ``models`` (all copies of one kind), or None: each fold on its own."""
    from ._members import _is_forest, _is_hgb, _is_knn

    for kind, test in (("forest", _is_forest), ("hgb", _is_hgb), ("knn", _is_knn), ("linear", is_linear)):
        if all(test(m) for m in models):
            return kind
    return None



def _log(g, p: str) -> str:
    return g.op("Log", [g.op("Clip", [p, g.const(np.float32(_EPS)), g.const(np.float32(1.0))])], "logp")


def _pool(g, outs: list[str], weights, pooling: str) -> str:
    w = [float(v) for v in weights]
    if pooling == "geometric":
        terms = [g.op("Mul", [_log(g, o), g.const(np.float32(v))]) for o, v in zip(outs, w)]
        s = terms[0] if len(terms) == 1 else g.op("Sum", terms, "logsum")
        return g.op("Softmax", [s], "geo", axis=1)
    terms = [g.op("Mul", [o, g.const(np.float32(v))]) for o, v in zip(outs, w)]
    return terms[0] if len(terms) == 1 else g.op("Sum", terms, "pooled")


def _is(*names):
    def match(est):
        return any(c.__name__ in names and c.__module__.startswith(("slimstack", "sklearn")) for c in type(est).__mro__)

    return match


# -- slimstack ensembles -----------------------------------------------------------------------------
@register_combiner(_is("VotingEnsemble", "EnsembleSelection"))
def _voting(g, est, x: str, path: str) -> str:
    hard = getattr(est, "voting", "soft") == "hard"
    method = "predict" if hard else "predict_proba"
    temps = getattr(est, "temperatures_", np.ones(len(est.estimators_)))
    pooling = "arithmetic" if hard else est.pooling
    outs, weights = [], []
    for (name, _), fit, w, t in zip(est._members_ if hasattr(est, "_members_") else est.estimators,
                                    est.estimators_, est.weights_, temps):
        if w <= 0:
            g.ctx.record.append({"member": f"{path}/{name}", "compiled": True, "note": "weight 0: not evaluated"})
            continue
        o = _fit_output(g, fit, x, method, est.classes_, f"{path}/{name}")
        if not hard and t != 1.0:
            o = g.op("Softmax", [g.op("Div", [_log(g, o), g.const(np.float32(t))])], "temp", axis=1)
        outs.append(o)
        weights.append(w)
    return _pool(g, outs, weights, pooling)


@register_combiner(_is("StackingEnsemble"))
def _stacking(g, est, x: str, path: str) -> str:
    cols = []
    for (name, _), fit in zip(est._members_, est.estimators_):
        method = est._methods_[name]
        o = _fit_output(g, fit, x, method, est.classes_, f"{path}/{name}")
        cols.append(_meta_column(g, o, method, len(est.classes_)))
    return _final(g, est, cols, x, path)


def _meta_column(g, o: str, method: str, k: int) -> str:
    if method == "predict_proba" and k == 2:
        return g.op("Slice", [o, g.const(np.array([1], np.int64)), g.const(np.array([2], np.int64)),
                              g.const(np.array([1], np.int64))], "p1")
    if method == "decision_function" and k == 2:
        return g.op("Reshape", [o, g.const(np.array([-1, 1], np.int64))], "dec1")
    return o


def _final(g, est, cols: list[str], x: str, path: str) -> str:
    if est.passthrough:
        cols = cols + [g.op("Cast", [x], "xf", to=TensorProto.FLOAT)]
    z = cols[0] if len(cols) == 1 else g.op("Concat", cols, "meta", axis=1)
    zd = g.op("Cast", [z], "zd", to=TensorProto.DOUBLE)
    final = est.final_estimator_
    saved = g.n_features
    g.n_features = _width_of(final, saved)
    try:
        p = node(g, final, zd, f"{path}/final_estimator")
    finally:
        g.n_features = saved
    if g.ctx.fallbacks and g.ctx.fallbacks[-1]["path"].startswith(f"{path}/final_estimator"):
        raise ModelError(f"the final estimator of {path!r} ({type(final).__name__}) cannot be compiled "
                         f"({g.ctx.record[-1].get('reason')}); it reads the members' outputs inside the graph, "
                         "so it cannot stay in Python. Use a linear or tree final estimator.")
    return p


def _width_of(est, default: int) -> int:
    return int(getattr(unwrap(est), "n_features_in_", default))


# -- scikit-learn's own ensembles ----------------------------------------------------------------------
def _sk(name):
    return lambda est: type(est).__name__ == name and type(est).__module__.startswith("sklearn.")


@register_combiner(_sk("VotingClassifier"))
def _sk_voting(g, est, x: str, path: str) -> str:
    names = [n for n, e in est.estimators if e != "drop"]
    w = est._weights_not_none
    w = np.ones(len(est.estimators_)) if w is None else np.asarray(w, float)
    w = w / w.sum()
    hard = est.voting == "hard"
    outs = []
    for name, m in zip(names, est.estimators_):
        o = node(g, m, x, f"{path}/{name}", "predict" if hard else "predict_proba")
        outs.append(_align(g, o, m.classes_, est.classes_, by_index=True))
    return _pool(g, outs, w, "arithmetic")


@register_combiner(_sk("StackingClassifier"))
def _sk_stacking(g, est, x: str, path: str) -> str:
    cols = []
    k = len(est.classes_)
    names = [n for n, _ in est.estimators]
    for name, m, method in zip(names, est.estimators_, est.stack_method_):
        if m == "drop":
            continue
        o = node(g, m, x, f"{path}/{name}", method)
        if method != "decision_function":
            o = _align(g, o, m.classes_, est.classes_, by_index=True)
        cols.append(_meta_column(g, o, method, k))
    p = _final(g, est, cols, x, path)
    return _align(g, p, est.final_estimator_.classes_, est.classes_, by_index=True)


# -- cascades and hierarchies --------------------------------------------------------------------------
@register_combiner(_is("Cascade"))
def _cascade(g, est, x: str, path: str) -> str:
    """Stage 1 on every row; only the rows it defers reach the next stage, inside an If (skipped when none)."""
    return _stage(g, est, 0, x, path)


def _stage(g, est, s: int, x: str, path: str) -> str:
    name, model = est.stages_[s]
    raw = node(g, model, x, f"{path}/{name}")
    p = _align(g, raw, model.classes_, est.classes_)
    if s == len(est.stages_) - 1:
        return p
    # route on float64 probabilities where the member computes them so (torch / ONNX members), else
    # on the float32 ones clipped to [0, 1] (a float32 top value of 1.0000001 must not pass a threshold of 1)
    pd = g.ctx.double.get(raw) if p == raw else None
    if pd is None:
        pd = g.op("Clip", [g.op("Cast", [p], "pd", to=TensorProto.DOUBLE), g.const(np.float64(0.0)),
                           g.const(np.float64(1.0))])
    conf = _confidence(g, pd, est.confidence, len(est.classes_))
    take = g.op("Greater", [conf, g.const(np.float64(est.thresholds_[s]), "thr")], "take")
    idx = g.op("Reshape", [g.op("NonZero", [g.op("Not", [take])]), g.const(np.array([-1], np.int64))], "defer")
    any_deferred = g.op("Greater", [g.op("Size", [idx]), g.const(np.int64(0))], "any_deferred")
    sub = g.child(g.op("Gather", [x, idx], "xdef", axis=0), idx)
    p_def = _stage(sub, est, s + 1, sub.x, path)
    merged = sub.op("ScatterND", [p, sub.op("Unsqueeze", [idx, g.const(np.array([1], np.int64))]), p_def], "merged")
    then = sub.body([merged], g.name("deferred"))
    keep = g.child(x, idx)
    kept = keep.op("Identity", [p], "kept")
    other = keep.body([kept], g.name("none_deferred"))
    return g.op("If", [any_deferred], "cascade", then_branch=then, else_branch=other)


def _confidence(g, p: str, measure: str, k: int) -> str:
    ax = g.const(np.array([1], np.int64))
    if measure == "max_prob":
        return g.op("ReduceMax", [p, ax], "conf", keepdims=0)
    if measure == "margin":
        top = g.op("TopK", [p, g.const(np.array([2], np.int64))], "top2", n_out=2, axis=1)[0]
        a = g.op("Gather", [top, g.const(np.int64(0))], axis=1)
        b = g.op("Gather", [top, g.const(np.int64(1))], axis=1)
        return g.op("Sub", [a, b], "conf")
    if measure == "entropy":  # 1 - H(p) / log(K), clipped to [0, 1]
        lp = g.op("Log", [g.op("Clip", [p, g.const(np.float64(1e-12)), g.const(np.float64(1.0))])])
        h = g.op("Neg", [g.op("ReduceSum", [g.op("Mul", [p, lp]), ax], keepdims=0)])
        c = g.op("Sub", [g.const(np.float64(1.0)), g.op("Div", [h, g.const(np.float64(np.log(k)))])])
        return g.op("Clip", [c, g.const(np.float64(0.0)), g.const(np.float64(1.0))], "conf")
    raise NotCompilable(f"confidence={measure!r}")


@register_combiner(_is("HierarchicalClassifier"))
def _hierarchy(g, est, x: str, path: str) -> str:
    names = list(est.groups_)
    K = len(est.classes_)
    if est.router_ is None:
        gp = None
    else:
        r = node(g, est.router_, x, f"{path}/router")
        gp = _align(g, r, np.asarray(est._router_cols), np.arange(len(names)), by_index=True)
    if gp is not None and est.routing == "hard":
        gp = one_hot_argmax(g, gp, len(names))
    terms = []
    for i, name in enumerate(names):
        spec = est.specialists_[name]
        if spec is None:
            cols = np.searchsorted(est.classes_, est.groups_[name])
            m = np.zeros((1, K), np.float32)
            m[0, cols] = 1.0
            within = g.const(m, "single")
        else:
            p = node(g, spec, x, f"{path}/{name}")
            within = _align(g, p, est._spec_cols[name], np.arange(K), by_index=True)
        if gp is None:
            terms.append(within)
            continue
        w = g.op("Slice", [gp, g.const(np.array([i], np.int64)), g.const(np.array([i + 1], np.int64)),
                           g.const(np.array([1], np.int64))], "gw")
        terms.append(g.op("Mul", [within, w], "routed"))
    return terms[0] if len(terms) == 1 else g.op("Sum", terms, "hier")

