"""One quantization of a torch module, checked and prepared: the model copy, its data and settings.

:func:`prepare` runs every entry check the module handlers share (tolerance, labelled data,
calibration that runs through the model) and deep-copies the model before anything touches it, so
the handlers and backends only read a :class:`Job`.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
from torch import nn

from .._arch import is_causal_lm, is_encoder
from .._config import Request
from .._validate import check_tolerance
from ..datasets import Dataset
from ..errors import DataError, ModelError
from ._configs import QuantConfig
from ._data import as_inputs, check_runs
from ._scheme import Scheme

__all__ = ["Job", "prepare"]

_SCORED_TASKS = ("classification", "regression", "sts")


@dataclasses.dataclass(frozen=True)
class Job:
    """What the module pipeline works on: ``model`` is a private eval-mode copy of the caller's model."""

    model: nn.Module
    config: QuantConfig
    scheme: Scheme
    calibration: np.ndarray | list[str] | None
    val: Dataset | None
    train: Dataset | None
    tolerance: float | None
    example: Any
    threads: int
    seed: int

    def sample_inputs(self) -> np.ndarray | list[str] | None:
        """Up to one batch of inputs for timing and export: calibration, else val, else example_inputs."""
        if self.calibration is not None:
            return self.calibration[:128]
        if self.val is not None:
            return as_inputs(self.val, self.model, what="val", limit=128)
        if self.example is not None:
            return as_inputs(self.example, self.model, what="example_inputs", limit=128)
        if is_encoder(self.model):
            return ["slimstack measures every model on this CPU.", "A quantized encoder keeps .encode."]
        return None


def module_refusal(model: Any) -> str | None:
    """Why the module handlers cannot take ``model`` (None when they can)."""
    if is_causal_lm(model):
        return ("a causal LM is quantized weight-only (WeightOnly(bits=4 or 8, ...)): activations stay float, "
                "weights go to llama.cpp's formats")
    if not isinstance(model, nn.Module):
        return (f"ss.quantize takes a torch nn.Module or sentence encoder, got {type(model).__name__}; export "
                "scikit-learn models with ss.save and quantize the torch ones")
    return None


def prepare(model: nn.Module, config: QuantConfig, request: Request, scheme: Scheme, *,
            default_tolerance: float | None = 0.01) -> Job:
    """Check ``request`` against ``model`` and return the :class:`Job` (``tolerance`` defaults with ``val``)."""
    why = module_refusal(model)
    if why:
        raise ModelError(why)
    tol, val, train = request.tolerance, request.val, request.train
    check_tolerance(tol)
    if tol is not None and val is None:
        raise DataError(f"tolerance={tol} needs val= (a labelled Dataset; data= is its old name) to measure "
                        "quality against")
    if val is not None and tol is None:
        tol = default_tolerance
    for what, ds in (("val", val), ("train", train)):
        if ds is not None and not isinstance(ds, Dataset):
            raise DataError(f"{what} must be a labelled slimstack Dataset, got {type(ds).__name__}; "
                            "wrap arrays with ss.datasets.from_arrays(X, y)")
    if val is not None and tol is not None and val.task not in _SCORED_TASKS:
        raise DataError(f"val {val.name!r} (task {val.task!r}) gives no quality to compare against; "
                        "pass labelled classification, regression or sts data")
    work = copy.deepcopy(model).eval()  # before anything runs it: a forward in train mode moves BatchNorm
    calib = None
    if request.calibration is not None:
        calib = as_inputs(request.calibration, work, what="calibration", limit=scheme.calibration_size)
        check_runs(work, calib, "calibration")
    for what, ds in (("val", val), ("train", train if train is not val else None)):
        if ds is not None:
            check_runs(work, as_inputs(ds, work, what=what, limit=4), what)
    return Job(work, config, scheme, calib, val, train, tol, request.example_inputs, request.threads, request.seed)
