"""Ensembles: voting with learned weights, Caruana selection and out-of-fold stacking.

All are scikit-learn estimators over scikit-learn, PyTorch (:class:`TorchClassifier`), ONNX
(:class:`OnnxClassifier`) and frozen prefit (:class:`Frozen`) members, and share fold models and
out-of-fold predictions through one :class:`OOFCache`. Hierarchical models (issue 7) live here
too: :class:`Cascade` (cheap stages answer confident inputs, expensive ones the rest) and
:class:`HierarchicalClassifier` (a router picks a class group, a specialist the class).
"""

from ._cascade import Cascade
from ._hierarchy import HierarchicalClassifier
from ._members import Frozen, OnnxClassifier, OnnxRegressor, TorchClassifier, TorchRegressor, module_to_onnx_bytes
from ._oof import OOFCache
from ._selection import EnsembleSelection
from ._stacking import LeakageWarning, StackingEnsemble, StackingEnsembleRegressor
from ._voting import VotingEnsemble, VotingEnsembleRegressor

__all__ = [
    "Cascade",
    "EnsembleSelection",
    "Frozen",
    "HierarchicalClassifier",
    "LeakageWarning",
    "OOFCache",
    "OnnxClassifier",
    "OnnxRegressor",
    "StackingEnsemble",
    "StackingEnsembleRegressor",
    "TorchClassifier",
    "TorchRegressor",
    "VotingEnsemble",
    "VotingEnsembleRegressor",
]
