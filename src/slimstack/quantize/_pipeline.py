"""The module pipeline shared by DynamicInt8, StaticInt8 and WeightOnly: build, score, time, choose, fall back.

Every offered backend builds its candidate; with ``val`` each is scored by ``ss.measure.score``;
with more than one candidate, ``ss.compare`` times them interleaved on the same batch; the
fastest (within tolerance) is kept, and the accuracy-aware fallback then keeps in float the fewest
layers that bring it within ``tolerance``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..datasets import Dataset
from ._backends import candidates_for
from ._fallback import accuracy_aware, relative_loss
from ._job import Job
from ._record import QuantRecord, QuantResult

__all__ = ["run_pipeline", "evaluator", "time_candidates"]


def evaluator(job: Job) -> tuple[Callable[[Any], float], str, bool]:
    """``(evaluate(model) -> quality on job.val, metric, higher_is_better)`` through ``ss.measure.score``."""
    from ..measure import higher_is_better, primary_metric, score

    metric = primary_metric(job.val, job.model)
    return (lambda m: score(m, job.val, metric, batch_size=128, threads=job.threads)), metric, higher_is_better(metric)


def time_candidates(models: dict[str, Any], inputs: np.ndarray | list[str], threads: int) -> dict[str, float]:
    """Median latency (ms) of one batch of ``inputs`` per model, timed interleaved by ``ss.compare``."""
    from ..measure import compare

    if isinstance(inputs, list):
        ds = Dataset(name="timing", task="text", texts=list(inputs), split="calibration")
    else:
        ds = Dataset(name="timing", task="regression", X=np.asarray(inputs), y=np.zeros(len(inputs), np.float32),
                     split="calibration")
    c = compare(models, ds, batch_size=len(inputs), threads=threads, warmup=2, runs=7, quality=False, cost=False)
    return {n: float(c[n].latency_ms) for n in models}


def run_pipeline(job: Job, offered: tuple[str, ...]) -> QuantResult:
    backends, notes = candidates_for(job, offered)
    built = {b.name: b.build() for b in backends}
    evaluate = metric = base = None
    higher = True
    candidates: dict[str, dict[str, Any]] = {b.name: {} for b in backends}
    if job.tolerance is not None:
        evaluate, metric, higher = evaluator(job)
        base = evaluate(job.model)
        for name, (m, _) in built.items():
            candidates[name]["quality"] = evaluate(m)
    sample = job.sample_inputs()
    if len(backends) > 1 and sample is not None:
        times = time_candidates({"float": job.model, **{n: m for n, (m, _) in built.items()}}, sample, job.threads)
        for n in built:
            candidates[n]["latency_ms"] = times[n]
        candidates["float"] = {"latency_ms": times["float"], **({"quality": base} if base is not None else {})}
    chosen, reason = _choose(job, [b.name for b in backends], candidates, base, higher)
    backend = next(b for b in backends if b.name == chosen)
    model, layers = built[chosen]
    record = QuantRecord(config=job.config.to_dict(), backend=chosen, backend_reason=reason, layers=layers,
                         candidates=candidates, notes=notes, tolerance=job.tolerance, quality_metric=metric,
                         quality_float=base)
    if evaluate is not None:
        found = accuracy_aware(backend.units(), backend.build, evaluate, base, job.tolerance, higher)
        model, record.layers = found["build"]
        record.quality_quantized, record.fallback_met = found["quality"], found["met"]
        record.sensitivity = found["costs"]
        for r in record.layers:
            if r["name"] in found["costs"]:
                r["cost"] = found["costs"][r["name"]]
        if not found["met"]:
            record.notes.append(f"no variant stayed within tolerance={job.tolerance}; every layer is kept in float")
    return QuantResult(model, record)


def _choose(job: Job, names: list[str], cand: dict[str, dict[str, Any]], base: float | None,
            higher: bool) -> tuple[str, str]:
    if len(names) == 1:
        return names[0], "requested" if job.config.backend != "auto" else "the only backend for this config"
    if not all("latency_ms" in cand[n] for n in names):
        return names[0], "no inputs to time the backends on; pass calibration= or val= to choose by measurement"
    ok = names
    if base is not None:
        ok = [n for n in names if relative_loss(base, cand[n]["quality"], higher) <= job.tolerance] or names
    best = min(ok, key=lambda n: cand[n]["latency_ms"])
    lat = ", ".join(f"{n} {cand[n]['latency_ms']:.2f} ms" for n in names)
    return best, f"fastest measured{' within tolerance' if base is not None else ''} ({lat})"
