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
    # issue 5: distillation
    "distill",
    "DistillConfig",
    "DistillResult",
]
