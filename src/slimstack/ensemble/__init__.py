"""Ensembles: voting with learned weights, Caruana selection and out-of-fold stacking.

All are scikit-learn estimators over scikit-learn, PyTorch (:class:`TorchClassifier`), ONNX
(:class:`OnnxClassifier`) and frozen prefit (:class:`Frozen`) members, and share fold models and
out-of-fold predictions through one :class:`OOFCache`.
"""

from ._members import Frozen, OnnxClassifier, OnnxRegressor, TorchClassifier, TorchRegressor
from ._oof import OOFCache
from ._selection import EnsembleSelection
from ._stacking import LeakageWarning, StackingEnsemble, StackingEnsembleRegressor
from ._voting import VotingEnsemble, VotingEnsembleRegressor

__all__ = [
    "EnsembleSelection",
    "Frozen",
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
