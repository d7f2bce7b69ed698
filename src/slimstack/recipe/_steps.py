"""Recipe steps: how each step kind parses its fields and runs on the current model.

A step names its technique with ``method`` (a registered config type, e.g. ``StructuredPruning``)
and gives that config's fields beside it; the config class validates them. Each kind's runner calls
the one public verb for that kind and returns the new model plus its record.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

from .._config import config_from_dict, registered_configs
from ..errors import ConfigError, close_matches

__all__ = ["StepContext", "parse_step", "run_step", "STEP_RUNNERS", "plain"]

# Verb keyword arguments that a step may carry beside its config fields.
_VERB_KEYS = {
    "prune": ("example_inputs_from",),
    "quantize": ("tolerance",),
    "distill": ("student", "teacher"),
}
_DEFAULT_METHOD = {"distill": "DistillConfig"}


@dataclasses.dataclass
class StepContext:
    original: Any
    train: Any
    val: Any
    test: Any
    example_inputs: Any
    seed: int = 0
    threads: int = 2


def parse_step(kind: str, fields: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Return (config, verb keyword arguments) for one step, or raise ConfigError naming the problem."""
    if kind == "compile":  # ss.compile on the model so far; fields: threads, fallback
        unknown = sorted(set(fields or {}) - {"threads", "fallback"})
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r}; allowed for compile: fallback, threads."
                              f"{close_matches(unknown[0], ['fallback', 'threads'])}")
        return dict(fields or {}), {}
    if kind in ("ensemble", "cascade", "merge"):
        from ._combine import parse_combine

        return parse_combine(kind, fields)
    fields = dict(fields)
    method = fields.pop("method", _DEFAULT_METHOD.get(kind))
    allowed = sorted(registered_configs(kind))
    if method is None:
        raise ConfigError(f"missing key 'method'; one of: {', '.join(allowed) or '(none installed)'}")
    if method not in allowed:
        raise ConfigError(f"unknown method {method!r}; allowed for {kind}: {', '.join(allowed) or '(none installed)'}."
                          f"{close_matches(method, allowed)}")
    extra = {k: fields.pop(k) for k in _VERB_KEYS.get(kind, ()) if k in fields}
    if kind == "distill":
        _check_distill(extra)
    if "tolerance" in extra:
        tol = extra["tolerance"]
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not (math.isfinite(tol) and 0 < tol < 1):
            raise ConfigError(f"tolerance={tol!r} must be a relative quality loss in (0, 1), e.g. 0.01 for 1%")
    return config_from_dict({"type": method, "data": fields}), extra


def _check_distill(extra: dict[str, Any]) -> None:
    teacher, student = extra.get("teacher", "original"), extra.get("student", "current")
    if teacher not in ("original", "current"):
        raise ConfigError(f"teacher={teacher!r} is not allowed; use 'original' or 'current'")
    ok = student == "current" or (isinstance(student, dict) and set(student) == {"shrink"}
                                  and isinstance(student["shrink"] or {}, dict))
    if not ok:
        raise ConfigError(f"student must be 'current' or {{shrink: {{layers: N | width: F}}}}, got {student!r}")


def _run_prune(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    from .. import prune

    r = prune(model, config, example_inputs=ctx.example_inputs, data=ctx.train, val=ctx.val)
    return r.model, {"summary": r.summary, "record": r.record}  # summary holds the sensitivity analysis


def _run_quantize(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    from .. import quantize
    from ..quantize import QAT

    if isinstance(config, QAT):
        return _run_qat(model, config, extra, ctx)
    kw: dict[str, Any] = {"calibration": ctx.train, "data": ctx.val, "threads": ctx.threads}
    if "tolerance" in extra:
        kw["tolerance"] = extra["tolerance"]
    q = quantize(model, config, **kw)
    return q.model, q.record


def _run_qat(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    """QAT trains on the train split only; the validation split judges the result (never trains it)."""
    from .. import quantize
    from ..measure import compare

    q = quantize(model, config, calibration=ctx.train, data=ctx.train, threads=ctx.threads)
    c = compare({"before": model, "qat": q.model}, ctx.val, runs=1, warmup=0, cost=False, threads=None)
    before, after = c["before"].quality, c["qat"].quality
    tol = extra.get("tolerance", 0.01)
    higher = c["qat"].quality_metric not in ("mse", "rmse", "mae", "log_loss")
    loss = (before - after if higher else after - before) / max(abs(before), 1e-12)
    record = plain(q.record)
    record["validation"] = {"metric": c["qat"].quality_metric, "before": before, "after": after,
                            "relative_loss": loss, "tolerance": tol, "met_tolerance": bool(loss <= tol),
                            "note": "trained on the train split; scored on the validation split"}
    return q.model, record


def _run_distill(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    from .. import distill, zoo

    # Default: the model so far (e.g. just pruned) learns from the original, unpruned model.
    spec = extra.get("student", "current")
    teacher_name = extra.get("teacher", "original")
    if teacher_name not in ("original", "current"):
        raise ConfigError(f"teacher={teacher_name!r} is not allowed; use 'original' or 'current'")
    teacher = ctx.original if teacher_name == "original" else model
    if spec == "current":
        student = copy.deepcopy(model)
    elif isinstance(spec, dict) and "shrink" in spec:
        student = zoo.shrink(model, **(spec["shrink"] or {}))
    else:
        raise ConfigError(f"student must be 'current' or {{shrink: {{layers: N | width: F}}}}, got {spec!r}")
    d = distill(teacher, student, config, train=ctx.train, val=ctx.val)
    return d.model, {"teacher": teacher_name, "history": d.history}


def _run_combine(kind: str):
    def run(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
        from ._combine import run_combine

        return run_combine(kind, model, config, extra, ctx)

    return run


def _run_compile(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    from ..compile import compile as compile_model

    fast = compile_model(model, **config)
    return fast, {"record": fast.record, "python_members": fast.python_members}


STEP_RUNNERS: dict[str, Callable[..., tuple[Any, Any]]] = {
    "prune": _run_prune,
    "quantize": _run_quantize,
    "distill": _run_distill,
    "ensemble": _run_combine("ensemble"),
    "cascade": _run_combine("cascade"),
    "merge": _run_combine("merge"),
    "compile": _run_compile,
}


def run_step(kind: str, fields: dict[str, Any], model: Any, ctx: StepContext) -> tuple[Any, Any]:
    config, extra = parse_step(kind, fields)
    return STEP_RUNNERS[kind](model, config, extra, ctx)


def plain(obj: Any) -> Any:
    """A JSON-able view of a step record (dataclasses, configs, numpy values, nested containers)."""
    import numpy as np

    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return plain(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)
