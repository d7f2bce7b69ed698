"""slimstack: make trained models slimmer and stronger together, and prove it on your CPU.

Compress (``prune``, ``quantize``, ``distill``), combine (ensembles, cascades, merging), and judge
every result with ``measure``/``compare``. See ``../README.md`` for the tour.
"""

from __future__ import annotations

from . import datasets, io, zoo
from .io import load, save
from .measure import Comparison, Measurement, compare, measure
from ._config import Config, config_from_dict, register_config
from .errors import (
    ConfigError,
    DataError,
    ModelError,
    ModelFileError,
    NotFittedError,
    ShapeError,
    SlimstackError,
    UnknownNameError,
    UnsafeFileError,
)
# issue 4: quantization
from .quantize import QAT, DynamicInt8, QuantResult, StaticInt8, WeightOnly, quantize

# issue 6: ensembles
from .ensemble import (
    EnsembleSelection,
    Frozen,
    LeakageWarning,
    OnnxClassifier,
    OnnxRegressor,
    OOFCache,
    StackingEnsemble,
    StackingEnsembleRegressor,
    TorchClassifier,
    TorchRegressor,
    VotingEnsemble,
    VotingEnsembleRegressor,
)
# issue 7: hierarchical models (cascades, coarse-to-fine classifiers, weight-space merging)
from .ensemble import Cascade, HierarchicalClassifier
from .merge import GreedySoup, TaskArithmetic, TiesMerging, UniformSoup, merge
# issue 3: pruning
from .prune import MagnitudePruning, NMPruning, PruneResult, StructuredPruning, TreePruning, prune

# issue 5: distillation
from .distill import DistillConfig, DistillResult, distill

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # data and models
    "datasets",
    "zoo",
    "io",
    # measure
    "measure",
    "compare",
    "Measurement",
    "Comparison",
    # save and load
    "save",
    "load",
    # configs
    "Config",
    "config_from_dict",
    "register_config",
    # errors
    "SlimstackError",
    "ConfigError",
    "DataError",
    "ModelError",
    "ModelFileError",
    "NotFittedError",
    "ShapeError",
    "UnknownNameError",
    "UnsafeFileError",
    # issue 6: ensembles
    "ensemble",
    "EnsembleSelection",
    "Frozen",
    "LeakageWarning",
    "OnnxClassifier",
    "OnnxRegressor",
    "OOFCache",
    "StackingEnsemble",
    "StackingEnsembleRegressor",
    "TorchClassifier",
    "TorchRegressor",
    "VotingEnsemble",
    "VotingEnsembleRegressor",
    # issue 7: hierarchical models (cascades, coarse-to-fine classifiers, weight-space merging)
    "Cascade",
    "HierarchicalClassifier",
    "merge",
    "UniformSoup",
    "GreedySoup",
    "TaskArithmetic",
    "TiesMerging",
    # issue 3: pruning
    "prune",
    "MagnitudePruning",
    "NMPruning",
    "StructuredPruning",
    "TreePruning",
    "PruneResult",
    # issue 4: quantization
    "quantize",
    "DynamicInt8",
    "StaticInt8",
    "WeightOnly",
    "QAT",
    "QuantResult",
    # issue 5: distillation
    "distill",
    "DistillConfig",
    "DistillResult",
]
