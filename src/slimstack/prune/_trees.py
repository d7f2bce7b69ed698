"""Cost-complexity pruning of fitted scikit-learn trees and forests, with ``ccp_alpha`` chosen on validation data.

Minimal cost-complexity pruning (Breiman et al. 1984) removes the subtrees whose impurity
reduction (Gini or entropy, whichever the tree was grown with) per leaf is below ``alpha``. The
fitted trees are pruned directly with scikit-learn's own routine, with no refit, so a forest keeps
its bootstrap samples and features; only the validation data is needed.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np

from .._config import Handler, Request
from ..errors import DataError, ModelError
from ._configs import TreePruning
from ._eval import allowed_drop, quality, tolerance_for
from ._registry import HANDLERS
from ._result import LayerRecord, PruneResult

__all__ = ["TreeHandler", "prune_trees_at"]

_SUPPORTED = "DecisionTreeClassifier/Regressor, RandomForest*, ExtraTrees*"


def _not_prunable(model: Any) -> str | None:
    """Why ``model`` is not a fitted tree or forest TreePruning can cut, or None."""
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
    from sklearn.tree import BaseDecisionTree

    forests = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
    if isinstance(model, (BaseDecisionTree, *forests)):
        fitted = hasattr(model, "tree_" if isinstance(model, BaseDecisionTree) else "estimators_")
        return None if fitted else f"{type(model).__name__} is not fitted; fit it before pruning"
    hint = (" Its leaf values are fitted by line search, so pruning inner nodes would change predictions; refit it "
            "with ccp_alpha=... instead." if "GradientBoosting" in type(model).__name__ else "")
    return f"TreePruning prunes {_SUPPORTED}; got {type(model).__name__}.{hint}"


def _trees(model: Any) -> list[Any]:
    why = _not_prunable(model)
    if why is not None:
        raise ModelError(why)
    return list(model.estimators_) if hasattr(model, "estimators_") else [model]


def _pruned_tree(est: Any, alpha: float):
    from sklearn.base import is_classifier
    from sklearn.tree._tree import Tree, _build_pruned_tree_ccp

    n_classes = np.atleast_1d(est.n_classes_) if is_classifier(est) else np.ones(est.n_outputs_, dtype=np.intp)
    tree = Tree(est.n_features_in_, np.asarray(n_classes, dtype=np.intp), est.n_outputs_)
    _build_pruned_tree_ccp(tree, est.tree_, float(alpha))
    return tree


def prune_trees_at(model: Any, alpha: float) -> Any:
    """A copy of ``model`` with every tree cost-complexity pruned at ``alpha``."""
    out = copy.deepcopy(model)
    for est in _trees(out):
        est.tree_ = _pruned_tree(est, alpha)
        est.ccp_alpha = float(alpha)
    if hasattr(out, "ccp_alpha"):
        out.ccp_alpha = float(alpha)
    return out


def _candidates(model: Any, n: int) -> np.ndarray:
    from sklearn.tree._tree import ccp_pruning_path

    alphas = np.concatenate([np.asarray(ccp_pruning_path(e.tree_)["ccp_alphas"]) for e in _trees(model)])
    alphas = np.unique(alphas[alphas > 0])
    if len(alphas) > n - 1:
        alphas = np.unique(np.quantile(alphas, np.linspace(0, 1, n - 1)))
    return np.concatenate([[0.0], alphas])


def _nodes(model: Any) -> list[int]:
    return [int(e.tree_.node_count) for e in _trees(model)]


@HANDLERS.register(TreePruning)
class TreeHandler(Handler):
    """Cost-complexity pruning of fitted scikit-learn trees and forests; ``val`` (or ``train``) picks alpha."""

    backends: ClassVar[tuple[str, ...]] = ("sklearn",)
    uses_tolerance = True

    def applies_to(self, model: Any) -> str | None:
        return _not_prunable(model)

    def run(self, model: Any, config: TreePruning, request: Request) -> PruneResult:
        rule = tolerance_for((config.tolerance, True) if config.tolerance else None, request.tolerance, config)
        return _prune_tree(model, config, request.val if request.val is not None else request.train,
                           rule[0] if rule else 0.0)


def _prune_tree(model: Any, config: TreePruning, data: Any, tolerance: float) -> PruneResult:
    before = _nodes(model)
    path: list[dict[str, float]] = []
    if config.ccp_alpha == "auto":
        if data is None or getattr(data, "X", None) is None:
            raise DataError("TreePruning(ccp_alpha='auto') picks alpha on validation data; pass data=ds_val or "
                            "val=ds_val (rows the trees were not fitted on) or a fixed ccp_alpha=...")
        for a in _candidates(model, config.n_alphas):
            cand = prune_trees_at(model, a)
            path.append({"ccp_alpha": float(a), "score": quality(cand, data), "nodes": int(sum(_nodes(cand)))})
        best = max(p["score"] for p in path)
        floor = best - allowed_drop(best, tolerance)
        alpha = max(p["ccp_alpha"] for p in path if p["score"] >= floor)
        why = (f"ccp_alpha={alpha:.4g}: largest alpha scoring within {tolerance:.2%} of the best "
               f"({best:.4g}) on validation data")
    else:
        alpha = float(config.ccp_alpha)
        why = f"ccp_alpha={alpha:.4g} as configured"
    pruned = prune_trees_at(model, alpha)
    after = _nodes(pruned)
    records = [LayerRecord(f"estimators_[{i}]" if len(before) > 1 else "tree_", "pruned" if a < b else "skipped",
                           "nodes", b, a, why if a < b else f"no subtree falls below ccp_alpha={alpha:.4g}")
               for i, (b, a) in enumerate(zip(before, after, strict=True))]
    summary = {"config": config.to_dict(), "ccp_alpha": alpha, "nodes_before": sum(before), "nodes": sum(after),
               "criterion": getattr(model, "criterion", None), "path": path}
    if data is not None and getattr(data, "X", None) is not None:
        summary.update(score_before=quality(model, data), score=quality(pruned, data))
    return PruneResult(pruned, records, summary)
