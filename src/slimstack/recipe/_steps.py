"""Recipe steps: the one step registry, and the steps that run one compressing verb.

A step kind is a :class:`Step`: ``parse(fields) -> (config, extra)`` checks a step's YAML fields
(``load_recipe`` runs it for every step), ``run(model, config, extra, ctx) -> (model, record)`` runs
it. Every record has the one shape of :func:`~slimstack.recipe._record.step_record`
(``{"verb", "summary", "records", ...}``), so the runner and the report treat every step alike.

A compressing step names its technique with ``method`` (a registered config type, e.g.
``StructuredPruning``) and gives that config's fields beside it; the config class validates them.
``type:`` names it as well, for a config that has a field called ``method`` (``type: WeightOnly,
method: rtn``).
Data goes to the verbs by meaning: ``train`` is what a technique may learn from (pruning's recovery
and Taylor scores, QAT, distillation), ``val`` what it may only choose by (quantization's fallback,
tree pruning's ``ccp_alpha``, distillation's early stop, merge's soup order), ``calibration`` the
inputs for activation ranges (the train split).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from .._config import config_from_dict, registered_configs
from .._validate import check_tolerance
from ..errors import ConfigError, close_matches
from ._combine import parse_cascade, parse_ensemble, run_cascade, run_ensemble
from ._merge_step import parse_merge_step, run_merge
from ._record import plain, result_model, step_record

__all__ = ["STEPS", "STEP_KINDS", "Step", "StepContext", "parse_step", "plain", "register_step", "run_step"]

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


@dataclasses.dataclass(frozen=True)
class Step:
    """One step kind: how its fields parse and how it runs."""

    kind: str
    parse: Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]
    run: Callable[[Any, Any, dict[str, Any], StepContext], tuple[Any, dict[str, Any]]]


STEPS: dict[str, Step] = {}


def register_step(kind: str, parse: Callable[..., Any], run: Callable[..., Any]) -> Step:
    """Add a step kind to recipes (its name is the step's key in YAML)."""
    if kind in STEPS:
        raise ValueError(f"recipe step {kind!r} registered twice")
    STEPS[kind] = Step(kind, parse, run)
    return STEPS[kind]


def _parse_config_step(kind: str) -> Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]:
    def parse(fields: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        fields = dict(fields)
        # ``type:`` names the technique too, for a config with a field called "method" (WeightOnly.method)
        method = fields.pop("type") if "type" in fields else fields.pop("method", _DEFAULT_METHOD.get(kind))
        allowed = sorted(registered_configs(kind))
        if method is None:
            raise ConfigError(f"missing key 'method'; one of: {', '.join(allowed) or '(none installed)'}")
        if method not in allowed:
            raise ConfigError(f"unknown method {method!r}; allowed for {kind}: "
                              f"{', '.join(allowed) or '(none installed)'}.{close_matches(method, allowed)}")
        extra = {k: fields.pop(k) for k in _VERB_KEYS.get(kind, ()) if k in fields}
        if kind == "distill":
            _check_distill(extra)
        check_tolerance(extra.get("tolerance"))
        return config_from_dict({"type": method, "data": fields}), extra

    return parse


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

    # calibration: what LM pruning's importance pass reads (the train split, as quantize's calibration)
    r = prune(model, config, example_inputs=ctx.example_inputs, train=ctx.train, val=ctx.val, calibration=ctx.train)
    return result_model(r), step_record("prune", r)  # summary holds the sensitivity analysis


def _run_quantize(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    from .. import quantize
    from ..quantize import QAT

    if isinstance(config, QAT):
        return _run_qat(model, config, extra, ctx)
    kw: dict[str, Any] = {"calibration": ctx.train, "val": ctx.val}
    if "tolerance" in extra:
        kw["tolerance"] = extra["tolerance"]
    q = quantize(model, config, threads=ctx.threads, **kw)
    return result_model(q), step_record("quantize", q)


def _run_qat(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    """QAT trains on the train split only; the validation split judges the result (never trains it)."""
    from .. import quantize
    from ..measure import higher_is_better, primary_metric, score

    q = quantize(model, config, threads=ctx.threads, calibration=ctx.train, train=ctx.train)
    qat = result_model(q)
    metric = primary_metric(ctx.val, qat)
    before, after = score(model, ctx.val, metric), score(qat, ctx.val, metric)
    tol = extra.get("tolerance", 0.01)
    loss = (before - after if higher_is_better(metric) else after - before) / max(abs(before), 1e-12)
    validation = {"metric": metric, "before": before, "after": after, "relative_loss": loss, "tolerance": tol,
                  "met_tolerance": bool(loss <= tol), "note": "trained on the train split; scored on the validation split"}
    return qat, step_record("quantize", q, validation=validation)


def _run_distill(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    from .. import distill, zoo

    # Default: the model so far (e.g. just pruned) learns from the original, unpruned model.
    spec = extra.get("student", "current")
    teacher_name = extra.get("teacher", "original")
    teacher = ctx.original if teacher_name == "original" else model
    student = copy.deepcopy(model) if spec == "current" else zoo.shrink(model, **(spec["shrink"] or {}))
    d = distill(teacher, student, config, train=ctx.train, val=ctx.val)
    return result_model(d), step_record("distill", d, teacher=teacher_name)


def _parse_compile(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``ss.compile`` on the model so far; fields: threads, fallback."""
    unknown = sorted(set(fields or {}) - {"threads", "fallback"})
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; allowed for compile: fallback, threads."
                          f"{close_matches(unknown[0], ['fallback', 'threads'])}")
    return dict(fields or {}), {}


def _run_compile(model: Any, config: Any, extra: dict[str, Any], ctx: StepContext):
    from ..compile import compile as compile_model

    fast = compile_model(model, **config)
    return fast, step_record("compile", summary={"python_members": fast.python_members, **config},
                             record=fast.record)


# The step registry, in the order recipes list them in messages.
register_step("prune", _parse_config_step("prune"), _run_prune)
register_step("distill", _parse_config_step("distill"), _run_distill)
register_step("quantize", _parse_config_step("quantize"), _run_quantize)
register_step("ensemble", parse_ensemble, run_ensemble)
register_step("cascade", parse_cascade, run_cascade)
register_step("merge", parse_merge_step, run_merge)
register_step("compile", _parse_compile, _run_compile)
STEP_KINDS: tuple[str, ...] = tuple(STEPS)


def parse_step(kind: str, fields: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Return (config, verb keyword arguments) for one step, or raise ConfigError naming the problem."""
    if kind not in STEPS:
        raise ConfigError(f"unknown step {kind!r}; allowed: {', '.join(STEPS)}.{close_matches(kind, STEPS)}")
    return STEPS[kind].parse(fields or {})


def run_step(kind: str, fields: dict[str, Any], model: Any, ctx: StepContext) -> tuple[Any, dict[str, Any]]:
    """Parse and run one step on ``model``: (new model, its record)."""
    config, extra = parse_step(kind, fields)
    return STEPS[kind].run(model, config, extra, ctx)
