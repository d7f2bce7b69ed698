"""The recipe ``merge`` step: several models of one architecture merged by :func:`slimstack.merge`.

.. code-block:: yaml

    - merge:
        method: greedy_soup            # uniform | greedy_soup | task_arithmetic | ties
        models:                        # two or more (one is enough with a base)
          here: current                # the model the previous steps produced
          seed1: {path: runs/seed1}    # a folder written by ss.save (relative to the recipe)
          seed2: {path: runs/seed2, trusted: false}
        base: original                 # task_arithmetic and ties: original | current | {path: ...}
        params: {density: 0.3}         # the merge config's fields

The validation split is passed as ``data=`` (merge's name for its validation data): greedy soups rank ingredients on it, task arithmetic
picks its scaling on it, and ``batchnorm: recalibrate`` recomputes statistics from it. Training data
is never used to choose anything here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, close_matches
from ._record import step_record

__all__ = ["parse_merge", "parse_merge_step", "run_merge", "MERGE_METHODS"]

MERGE_METHODS = ("uniform", "greedy_soup", "task_arithmetic", "ties")
_ALLOWED = ("method", "models", "base", "params")
_SOURCE_KEYS = ("path", "trusted")


def _source(where: str, spec: Any) -> dict[str, Any]:
    if spec in ("current", "original"):
        return {"from": spec}
    if not isinstance(spec, dict) or "path" not in spec:
        raise ConfigError(f"{where} must be 'current', 'original' or {{path: FOLDER}} (a model saved by ss.save), "
                          f"got {spec!r}")
    unknown = sorted(set(spec) - set(_SOURCE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(_SOURCE_KEYS)}."
                          f"{close_matches(unknown[0], _SOURCE_KEYS)}")
    path = spec["path"]
    if not isinstance(path, str) or not Path(path).exists():
        raise ConfigError(f"{where}: path {path!r} does not exist; name a model folder written by ss.save "
                          "(relative paths are taken from the recipe's folder)")
    trusted = spec.get("trusted", False)
    if not isinstance(trusted, bool):
        raise ConfigError(f"{where}: trusted={trusted!r} must be true or false")
    return {"from": "path", "path": path, "trusted": trusted}


def parse_merge_step(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    fields = dict(fields)
    method = fields.pop("method", MERGE_METHODS[0])
    if method not in MERGE_METHODS:
        raise ConfigError(f"unknown method {method!r}; allowed for merge: {', '.join(MERGE_METHODS)}."
                          f"{close_matches(method, MERGE_METHODS)}")
    return parse_merge(method, fields), {}


def _merge_config(method: str, params: dict[str, Any]) -> Any:
    """The merge config for ``method``, its fields read as any config's are (lists become tuples)."""
    from .._config import config_from_dict
    from ..merge import METHODS

    return config_from_dict({"type": METHODS[method].__name__, "data": params})


def parse_merge(method: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Check a merge step's fields (method, models, base, params) and build its merge config."""
    from ..merge import TaskArithmetic, TiesMerging

    unknown = sorted(set(fields) - set(_ALLOWED))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; allowed: {', '.join(_ALLOWED)}."
                          f"{close_matches(unknown[0], _ALLOWED)}")
    params = fields.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"params must be a mapping of the {method} config's fields, got {params!r}")
    config = _merge_config(method, dict(params))
    raw = fields.get("models")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("missing key 'models': a mapping of name -> current | original | {path: FOLDER} "
                          "naming the models to merge")
    models = {str(n): _source(f"models.{n}", s) for n, s in raw.items()}
    needs_base = isinstance(config, TaskArithmetic | TiesMerging)  # they merge differences from a base
    if needs_base and "base" not in fields:
        raise ConfigError(f"method {method!r} merges differences from a common starting point: add "
                          "`base: original` (or current, or {path: FOLDER})")
    if not needs_base and "base" in fields:
        raise ConfigError(f"method {method!r} does not use base; remove it, or use task_arithmetic or ties")
    if not needs_base and len(models) < 2:
        raise ConfigError(f"method {method!r} needs at least two models under 'models'; merging one model "
                          "gives that model back")
    base = _source("base", fields["base"]) if needs_base else None
    return {"method": method, "config": config, "models": models, "base": base}


def _load(spec: dict[str, Any], current: Any, ctx: Any) -> Any:
    from .. import io

    if spec["from"] == "current":
        return current
    if spec["from"] == "original":
        return ctx.original
    return io.load(spec["path"], trusted=spec["trusted"])


def run_merge(model: Any, parsed: dict[str, Any], extra: dict[str, Any], ctx: Any) -> tuple[Any, dict[str, Any]]:
    from ..merge import merge

    models = [_load(s, model, ctx) for s in parsed["models"].values()]
    base = None if parsed["base"] is None else _load(parsed["base"], model, ctx)
    result = merge(models, parsed["config"], base=base, val=ctx.val, return_result=True)
    record = step_record("merge", result, method=parsed["method"],
                         models={n: s.get("path", s["from"]) for n, s in parsed["models"].items()},
                         base=None if parsed["base"] is None else parsed["base"].get("path", parsed["base"]["from"]),
                         selected_on="validation split", merge=getattr(result.model, "merge_record_", {}))
    return result.model, record
