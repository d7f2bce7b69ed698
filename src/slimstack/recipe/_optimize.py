"""``slimstack optimize``: accuracy-aware search over techniques and their parameters with Optuna.

The study lives in an SQLite file in OUT by default (``--storage`` takes a database URL so several
machines can share one study). Every finished trial is committed to it, so a killed search resumes
without losing one; trials left running by a killed process are marked failed and not counted.
After every trial the best model within the tolerance (or, while none meets it, the closest) is
saved atomically to ``OUT/best``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import io
from .._utils import atomic_file
from ..errors import ConfigError
from ._outdir import OutDir
from ._runner import prepare
from ._schema import Recipe, SearchSpec, load_recipe
from ._steps import plain, run_step

__all__ = ["optimize_recipe", "apply_params"]

_COST = {"latency": "latency_ms", "size": "size_bytes", "throughput": "throughput"}


def apply_params(recipe: Recipe, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The recipe's steps with sampled values written in; a step whose method is 'none' is dropped."""
    steps = [(k, dict(f or {})) for k, f in recipe.step_list()]
    for key, value in params.items():
        target, field = key.split(".", 1)
        idx = int(target) if target.isdigit() else next((i for i, (k, _) in enumerate(steps) if k == target), None)
        if idx is None or idx >= len(steps):
            raise ConfigError(f"search key {key!r} names no step of the recipe; steps are "
                              f"{', '.join(k for k, _ in steps)}")
        node = steps[idx][1]
        *parents, leaf = field.split(".")  # e.g. cascade.params.max_accuracy_drop
        for part in parents:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[leaf] = value
    return [(k, f) for k, f in steps if f.get("method") != "none"]


def _sample(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key, dist in space.items():
        if "choices" in dist:
            out[key] = trial.suggest_categorical(key, dist["choices"])
        elif isinstance(dist["low"], int) and isinstance(dist["high"], int) and not dist.get("log"):
            out[key] = trial.suggest_int(key, dist["low"], dist["high"], step=dist.get("step", 1))
        else:
            out[key] = trial.suggest_float(key, float(dist["low"]), float(dist["high"]), log=bool(dist.get("log")))
    return out


def _single_technique_trials(recipe: Recipe, space: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One enqueued trial per step kind on its own (others set to 'none' where the space allows)."""
    trials = []
    method_keys = {k: d["choices"] for k, d in space.items() if k.endswith(".method") and "choices" in d}
    for key, choices in method_keys.items():
        others = {k: "none" for k, c in method_keys.items() if k != key and "none" in c}
        for choice in choices:
            if choice != "none":
                trials.append({key: choice, **others})
    return trials


def _stale_to_failed(study: Any) -> int:
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
    return n


def optimize_recipe(source: Any, out: str | Path, *, storage: str | None = None, trials: int | None = None,
                    console: Console | None = None, force: bool = False) -> dict[str, Any]:
    """Search the recipe's ``search.space``; return the report (also written to OUT).

    OUT is locked for the search and only slimstack's own files there are overwritten (see
    :class:`~slimstack.recipe._outdir.OutDir`; ``force`` lets it replace others at its paths).
    """
    recipe = source if isinstance(source, Recipe) else load_recipe(source)
    if not (recipe.search or SearchSpec()).space:
        raise ConfigError("the recipe has no search.space; add e.g. `search: {space: {prune.ratio: {low: 0.1, "
                          "high: 0.7}}}`")
    with OutDir(out, force=force, command="optimize") as od:
        od.drop_reports()
        return _optimize(recipe, od, storage=storage, trials=trials, console=console)


def _optimize(recipe: Recipe, od: OutDir, *, storage: str | None, trials: int | None,
              console: Console | None) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    from ..measure import compare
    from ..report import write_report

    console = console or Console()
    search = recipe.search or SearchSpec()
    out = od.out
    data, original, ctx, _ = prepare(recipe, od, console)
    storage = storage or search.storage or f"sqlite:///{od.claim('study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(seed=search.seed)
    study = optuna.create_study(study_name=recipe.name, storage=storage, load_if_exists=True, sampler=sampler,
                                directions=["maximize", "maximize" if recipe.objective == "throughput" else "minimize"])
    stale = _stale_to_failed(study)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if done == 0 and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        for params in _single_technique_trials(recipe, search.space):
            study.enqueue_trial(params, skip_if_exists=True)
    console.print(f"study {recipe.name!r} in {storage}: {done} finished trials"
                  + (f", {stale} interrupted trials marked failed" if stale else ""))
    m = recipe.measure
    base = compare({"original": original}, data["test"], batch_size=m.batch_size, threads=m.threads, runs=m.runs,
                   warmup=m.warmup)["original"]
    floor = base.quality * (1 - recipe.tolerance)
    cost_field = _COST[recipe.objective]

    def objective(trial: Any) -> tuple[float, float]:
        params = _sample(trial, search.space)
        model, records = original, []
        for kind, fields in apply_params(recipe, params):
            model, record = run_step(kind, fields, model, ctx)
            records.append({"kind": kind, "fields": plain(fields), "record": plain(record)})
        c = compare({"original": original, "trial": model}, data["test"], batch_size=m.batch_size, threads=m.threads,
                    runs=m.runs, warmup=m.warmup)
        meas = c["trial"]
        row = {**meas.to_dict(), "name": f"trial {trial.number}", "search_params": params,
               "speedup": c.speedup("trial"), "size_ratio": c.ratio("trial", "original", "size_bytes")}
        # cost relative to the baseline measured in the same interleaved run
        rel = c.ratio("trial", "original", cost_field)
        trial.set_user_attr("row", json.loads(json.dumps(row, default=str)))
        trial.set_user_attr("records", json.loads(json.dumps(records, default=str)))
        trial.set_user_attr("feasible", bool(meas.quality is not None and meas.quality >= floor))
        _keep_best(od, trial.number, model, meas.quality, rel, floor, recipe.objective)
        console.print(f"trial {trial.number}: {params} -> {meas.quality_metric} {meas.quality:.4f}, "
                      f"{cost_field} x{rel:.3f} of the original")
        return float(meas.quality), float(rel)

    remaining = max(0, (trials or search.trials) - done)
    if remaining:
        # A trial that fails (a technique that does not apply to this model, say) is stored as failed,
        # logged with its reason, and the search goes on.
        study.optimize(objective, n_trials=remaining, timeout=search.timeout_s, catch=(Exception,))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows = [{**base.to_dict(), "name": "original", "speedup": 1.0, "size_ratio": 1.0}]
    rows += [t.user_attrs["row"] for t in finished if "row" in t.user_attrs]
    best = json.loads((out / "best.json").read_text()) if (out / "best.json").exists() else None
    report = _search_report(recipe, rows, best, storage, len(finished))
    for rel in ("report.json", "report.html"):
        od.claim(rel)
    write_report(report, out)
    verdict = (f"best within tolerance: {best['trial']}" if best and best["met_tolerance"] else
               "no trial met the tolerance; the closest model was saved")
    console.print(f"{len(finished)} trials; {verdict}; model in {out / 'best'}; report {out / 'report.html'}")
    return report


def _keep_best(od: OutDir, number: int, model: Any, quality: float, rel_cost: float, floor: float,
               objective: str) -> None:
    path = od.out / "best.json"
    cur = json.loads(path.read_text()) if path.exists() and od.owns("best.json") else None
    feasible = quality >= floor
    sign = -1 if objective == "throughput" else 1
    if cur is None:
        better = True
    elif feasible != cur["met_tolerance"]:
        better = feasible
    elif feasible:
        better = sign * rel_cost < sign * cur["relative_cost"]
    else:
        better = quality > cur["quality"]
    if not better:
        return
    io.save(model, od.claim("best"))
    with atomic_file(od.claim("best.json")) as fh:
        json.dump({"trial": f"trial {number}", "quality": quality, "relative_cost": rel_cost,
                   "met_tolerance": feasible, "quality_floor": floor}, fh, indent=2)


def _search_report(recipe: Recipe, rows: list[dict], best: dict | None, storage: str, n: int) -> dict[str, Any]:
    from ..report import build_report

    report = build_report(recipe, rows, "original", [], extra={"search": {"storage": storage, "trials": n}})
    if best is not None:  # the saved best (or closest) model, which may differ from the table's pick
        report["best"] = {"name": best["trial"], "met_tolerance": best["met_tolerance"],
                          "quality_floor": best["quality_floor"]}
    return report
