"""Tree ensembles as one ``ai.onnx.ml.TreeEnsembleRegressor`` node, read straight from the fitted arrays.

skl2onnx 1.20 cannot convert scikit-learn 1.9's ``HistGradientBoostingClassifier`` and takes
seconds per hundred forest trees, so slimstack writes tree nodes itself: every tree becomes rows of
the node attributes, thresholds stay float64 (``nodes_values_as_tensor``) and the input stays
double, so a row takes exactly the branch it takes in scikit-learn, NaN included (each node's
``missing_go_to_left``). Several fitted forests (the fold models of one member) go into one node
with their leaf values pre-scaled, so averaging costs nothing at prediction.
"""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from ._errors import NotCompilable

__all__ = ["sklearn_trees", "hgb_trees", "tree_node", "Tree"]


class Tree:
    """One binary tree: per node feature, threshold, children, leaf flag, NaN direction, leaf values."""

    def __init__(self, feature, threshold, left, right, leaf, missing_left, values):
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.leaf = np.asarray(leaf, dtype=bool)
        self.missing_left = np.asarray(missing_left, dtype=bool)
        self.values = np.asarray(values, dtype=np.float64)  # [n_nodes, n_targets]


def sklearn_trees(est, scale: float = 1.0) -> tuple[list[Tree], str]:
    """Trees of a fitted DecisionTree / RandomForest / ExtraTrees classifier; leaf values are class fractions."""
    trees = [est] if hasattr(est, "tree_") else list(est.estimators_)
    if getattr(est, "n_outputs_", 1) != 1:
        raise NotCompilable(f"{type(est).__name__} with {est.n_outputs_} outputs (multi-output trees)")
    out = []
    w = scale / len(trees)
    for t in trees:
        tr = t.tree_
        leaf = tr.children_left < 0
        v = tr.value[:, 0, :].astype(np.float64)
        v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300) * w
        miss = getattr(tr, "missing_go_to_left", np.zeros(tr.node_count, dtype=bool)).astype(bool)
        out.append(Tree(tr.feature, tr.threshold, tr.children_left, tr.children_right, leaf, miss, v))
    return out, "proba"


def hgb_trees(est, scale: float = 1.0) -> tuple[list[Tree], np.ndarray]:
    """Trees of a fitted HistGradientBoosting model (raw scores; the caller adds the baseline)."""
    if getattr(est, "_preprocessor", None) is not None:
        raise NotCompilable(f"{type(est).__name__} with categorical_features (its internal encoder)")
    k = est.n_trees_per_iteration_
    out = []
    for iteration in est._predictors:
        for target, pred in enumerate(iteration):
            nodes = pred.nodes
            if np.any(nodes["is_categorical"]):
                raise NotCompilable(f"{type(est).__name__} with categorical splits")
            v = np.zeros((len(nodes), k))
            v[:, target] = nodes["value"] * scale
            out.append(Tree(nodes["feature_idx"], nodes["num_threshold"], nodes["left"], nodes["right"],
                            nodes["is_leaf"], nodes["missing_go_to_left"], v))
    baseline = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1) * scale
    return out, baseline


def tree_node(g, x: str, trees: list[Tree], n_targets: int, base=None) -> str:
    """Add one TreeEnsembleRegressor over ``trees`` reading the double input ``x``; returns [N, n_targets] float."""
    tid, nid, feat, thr, mode, tru, fal, miss = [], [], [], [], [], [], [], []
    t_tree, t_node, t_id, t_w = [], [], [], []
    for i, t in enumerate(trees):
        n = len(t.feature)
        ids = np.arange(n)
        tid.append(np.full(n, i))
        nid.append(ids)
        feat.append(np.where(t.leaf, 0, t.feature))
        thr.append(np.where(t.leaf, 0.0, t.threshold))
        mode += ["LEAF" if lf else "BRANCH_LEQ" for lf in t.leaf]
        tru.append(np.where(t.leaf, 0, t.left))
        fal.append(np.where(t.leaf, 0, t.right))
        miss.append((t.missing_left & ~t.leaf).astype(np.int64))
        leaves = ids[t.leaf]
        vals = t.values[leaves]
        nz = np.nonzero(vals)
        t_tree.append(np.full(len(nz[0]), i))
        t_node.append(leaves[nz[0]])
        t_id.append(nz[1])
        t_w.append(vals[nz])
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    attrs = dict(
        nodes_treeids=cat(tid, np.int64).tolist(), nodes_nodeids=cat(nid, np.int64).tolist(),
        nodes_featureids=cat(feat, np.int64).tolist(), nodes_modes=mode,
        nodes_truenodeids=cat(tru, np.int64).tolist(), nodes_falsenodeids=cat(fal, np.int64).tolist(),
        nodes_missing_value_tracks_true=cat(miss, np.int64).tolist(),
        nodes_values_as_tensor=numpy_helper.from_array(cat(thr, np.float64), "thr"),
        target_treeids=cat(t_tree, np.int64).tolist(), target_nodeids=cat(t_node, np.int64).tolist(),
        target_ids=cat(t_id, np.int64).tolist(),
        target_weights_as_tensor=numpy_helper.from_array(cat(t_w, np.float64), "w"),
        n_targets=int(n_targets), aggregate_function="SUM", post_transform="NONE",
    )
    if base is not None:
        attrs["base_values_as_tensor"] = numpy_helper.from_array(np.asarray(base, dtype=np.float64), "base")
    out = g.name("trees")
    g.nodes.append(helper.make_node("TreeEnsembleRegressor", [x], [out], name=g.name("n_trees"),
                                    domain="ai.onnx.ml", **attrs))
    return out
