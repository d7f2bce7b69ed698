"""slimstack: make trained models slimmer and stronger together, and prove it on your CPU.

Compress (``prune``, ``quantize``, ``distill``), combine (ensembles, cascades, merging), and judge
every result with ``measure``/``compare``. See ``../README.md`` for the tour.
"""

from __future__ import annotations

from . import _plugins

_plugins.load()  # the packages that register formats, architectures, adapters and handlers with the base

from . import datasets, io, llm, recipe, report, zoo  # noqa: E402
from .io import load, save
from . import measure  # callable: ss.measure(model, data) runs the verb
from .measure import Comparison, Measurement, compare
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
# compress
from . import distill, merge, prune, quantize  # each package is callable as its verb (see _verbs.py)
from .distill import DistillConfig, DistillResult
from .prune import (LayerDrop, MagnitudePruning, NMPruning, PruneResult, StructuredPruning, TreePruning, WandaPruning,
                    WidthPruning)
from .quantize import QAT, DynamicInt8, QuantResult, StaticInt8, WeightOnly

# combine
from .ensemble import (
    Cascade,
    EnsembleSelection,
    Frozen,
    HierarchicalClassifier,
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
from .merge import GreedySoup, TaskArithmetic, TiesMerging, UniformSoup

# serve combined models as one graph
from . import compile  # noqa: A004  (callable: ss.compile(est) runs the verb)
from .compile import CompiledModel, CompileWarning

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # data and models
    "datasets",
    "zoo",
    "io",
    "llm",
    "recipe",
    "report",
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
    # combine: ensembles
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
    # combine: cascades, hierarchies, weight-space merging
    "Cascade",
    "HierarchicalClassifier",
    "merge",
    "UniformSoup",
    "GreedySoup",
    "TaskArithmetic",
    "TiesMerging",
    # serve combined models
    "compile",
    "CompiledModel",
    "CompileWarning",
    # compress: pruning
    "prune",
    "MagnitudePruning",
    "NMPruning",
    "StructuredPruning",
    "TreePruning",
    "WandaPruning",
    "LayerDrop",
    "WidthPruning",
    "PruneResult",
    # compress: quantization
    "quantize",
    "DynamicInt8",
    "StaticInt8",
    "WeightOnly",
    "QAT",
    "QuantResult",
    # compress: distillation
    "distill",
    "DistillConfig",
    "DistillResult",
]
