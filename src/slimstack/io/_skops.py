"""Loading ``.skops`` files without running code from them.

skops rebuilds an object tree from a JSON schema; every node names a type or a function by its
import path, and ``skops.io.get_untrusted_types`` lists the ones skops does not trust by default.
Without ``trusted=True`` slimstack loads a file only when each of those names is in
:data:`ALLOWED_TYPES`: specific scikit-learn and slimstack classes that fitted models hold (never a
whole module, never a function: a function stored as a parameter, e.g. ``FunctionTransformer(func=eval)``,
runs when the model is used). Two of them, scikit-learn's tree node stores, index arrays with the
node numbers they hold without bounds checks, so their nodes are checked after loading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError, UnsafeFileError

__all__ = ["ALLOWED_TYPES", "load_skops"]

_TREE = "sklearn.tree._tree.Tree"
_HIST_TREE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"

# Classes (never functions, never modules) that fitted models hold beyond what skops trusts by
# default. Rebuilding one calls only ``cls.__new__`` and ``__setstate__``/``__dict__.update``.
ALLOWED_TYPES: frozenset[str] = frozenset({
    _TREE,  # decision trees, forests, gradient boosting: nodes checked after loading
    _HIST_TREE,  # HistGradientBoosting*: nodes checked after loading
    "sklearn.utils._bunch.Bunch",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.KFold",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.model_selection._split.RepeatedKFold",
    "sklearn.model_selection._split.RepeatedStratifiedKFold",
    "sklearn.model_selection._split.ShuffleSplit",
    "sklearn.model_selection._split.StratifiedShuffleSplit",
    "sklearn.model_selection._split.GroupKFold",
    "sklearn.model_selection._split.StratifiedGroupKFold",
    "sklearn.model_selection._split.LeaveOneOut",
    "sklearn.model_selection._split.PredefinedSplit",
    "slimstack.ensemble._voting.VotingEnsemble",
    "slimstack.ensemble._voting.VotingEnsembleRegressor",
    "slimstack.ensemble._stacking.StackingEnsemble",
    "slimstack.ensemble._stacking.StackingEnsembleRegressor",
    "slimstack.ensemble._selection.EnsembleSelection",
    "slimstack.ensemble._cascade.Cascade",
    "slimstack.ensemble._hierarchy.HierarchicalClassifier",
    "slimstack.ensemble._members.Frozen",
    "slimstack.ensemble._members.OnnxClassifier",
    "slimstack.ensemble._members.OnnxRegressor",
    # their modules are stored as ss.save files (safetensors + JSON) and rebuilt by ss.load
    "slimstack.ensemble._members.TorchClassifier",
    "slimstack.ensemble._members.TorchRegressor",
    "slimstack.ensemble._oof.MemberFit",
    "slimstack.ensemble._weights._StoredClassifier",
    "slimstack.ensemble._weights._StoredRegressor",
})


def load_skops(file: Path, trusted: bool) -> Any:
    """Load ``file``; without ``trusted`` refuse any type outside skops' defaults and :data:`ALLOWED_TYPES`."""
    import skops.io as sio

    if not file.is_file():
        raise ModelFileError(f"{str(file)!r} is missing; save the model again")
    try:
        untrusted = sio.get_untrusted_types(file=str(file))
    except Exception as exc:  # skops raises many types on a malformed zip or schema
        raise ModelFileError(f"{str(file)!r} is not a readable skops file ({type(exc).__name__}: {exc}); "
                             "save the model again") from exc
    refused = [t for t in untrusted if t not in ALLOWED_TYPES]
    if refused and not trusted:
        raise UnsafeFileError(
            f"{file.name} would import and run {', '.join(refused[:6])}{' ...' if len(refused) > 6 else ''}, "
            "which slimstack does not trust (it loads scikit-learn/numpy/scipy model types only, no functions); "
            "pass trusted=True (CLI: --trusted) only if you trust the file's source, since it can then run code"
        )
    allowed = list(untrusted) if trusted else [t for t in untrusted if t in ALLOWED_TYPES]
    try:
        obj = sio.load(str(file), trusted=allowed)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
        raise ModelFileError(f"{str(file)!r} could not be rebuilt ({type(exc).__name__}: {exc}); "
                             "save the model again") from exc
    if not trusted and (_TREE in untrusted or _HIST_TREE in untrusted):
        check_tree_nodes(obj, file)
    return obj


def check_tree_nodes(obj: Any, file: Path) -> None:
    """Refuse trees whose node indices point outside their node or feature arrays."""
    for tree, n_features, kind in _trees(obj, None, set()):
        problem = _tree_problem(tree, n_features) if kind == "tree" else _hist_problem(tree, n_features)
        if problem:
            raise UnsafeFileError(f"{file.name}: a decision tree in it fails slimstack's bounds check ({problem}); "
                                  "scikit-learn would read memory outside it. Save the model again, or pass "
                                  "trusted=True only if you trust the file's source")


def _trees(obj: Any, n_features: int | None, seen: set[int]):
    if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float | bool):
        return
    seen.add(id(obj))
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if name == _TREE:
        yield obj, n_features, "tree"
        return
    if name == _HIST_TREE:
        yield obj, n_features, "hist"
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for item in obj.ravel():
                yield from _trees(item, n_features, seen)
        return
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    elif hasattr(obj, "__dict__"):
        n = getattr(obj, "n_features_in_", None)
        n_features = int(n) if isinstance(n, int | np.integer) else n_features
        children = list(vars(obj).values())
    else:
        return
    for child in children:
        yield from _trees(child, n_features, seen)


def _links_problem(left: np.ndarray, right: np.ndarray, internal: np.ndarray, n: int) -> str:
    idx = np.arange(n)
    for side, child in (("left", left), ("right", right)):
        bad = internal & ((child <= idx) | (child >= n))
        if bad.any():
            i = int(np.argmax(bad))
            return f"node {i} has {side} child {int(child[i])}, outside nodes {i + 1}..{n - 1}"
    return ""


def _tree_problem(tree: Any, n_features: int | None) -> str:
    n = int(tree.node_count)
    left, right, feature = (np.asarray(a, dtype=np.int64) for a in (tree.children_left, tree.children_right,
                                                                        tree.feature))
    if not (len(left) == len(right) == len(feature) == n) or n < 1:
        return f"node arrays of lengths {len(left)}, {len(right)}, {len(feature)} for {n} nodes"
    leaf = left == -1
    if (right[leaf] != -1).any():
        return "a leaf with a right child"
    if problem := _links_problem(left, right, ~leaf, n):
        return problem
    limit = min(int(tree.n_features), n_features) if n_features is not None else int(tree.n_features)
    bad = ~leaf & ((feature < 0) | (feature >= limit))
    if bad.any():
        i = int(np.argmax(bad))
        return f"node {i} splits on feature {int(feature[i])} of {limit}"
    return ""


def _hist_problem(pred: Any, n_features: int | None) -> str:
    nodes = pred.nodes
    n = len(nodes)
    if n < 1:
        return "no nodes"
    leaf = nodes["is_leaf"].astype(bool)
    if problem := _links_problem(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), ~leaf, n):
        return problem
    if n_features is None:
        return "a tree predictor outside a fitted estimator"
    feature = nodes["feature_idx"].astype(np.int64)
    bad = ~leaf & ((feature < 0) | (feature >= n_features))
    if bad.any():
        i = int(np.argmax(bad))
        return f"node {i} splits on feature {int(feature[i])} of {n_features}"
    if (nodes["is_categorical"].astype(bool) & ~leaf).any():
        return "categorical splits, whose bitset indices slimstack does not check"
    return ""
