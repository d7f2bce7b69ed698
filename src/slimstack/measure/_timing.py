"""Interleaved timing: each round runs every model once on its prepared batch, rotating the order.

Drifts in machine load (other processes, thermal state) then hit every variant alike, so ratios of
medians are fair even on a busy machine. :func:`time_interleaved` is the public entry (quantize's
``backend="auto"`` and benchmarks time candidates with it); ``ss.compare`` uses the same loop.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ..errors import ConfigError
from ._adapters import ModelAdapter, adapt

__all__ = ["time_interleaved"]

_COOLDOWN_S = 0.005


def time_interleaved(models: dict[str, Any], inputs: Any, *, threads: int | None = 2, warmup: int = 3,
                     runs: int = 20) -> dict[str, list[float]]:
    """Milliseconds per call of each model on ``inputs`` (one batch), timed interleaved.

    ``models`` maps a name to anything ``ss.measure`` takes; ``inputs`` is one batch every model
    accepts (an array, or a list of sentences for encoders). Returns ``{name: [ms, ...]}`` with
    ``runs`` samples each, after ``warmup`` untimed rounds.

    Examples
    --------
    >>> t = ss.measure.time_interleaved({"fp32": model, "int8": q.model}, x[:64], runs=10)  # doctest: +SKIP
    >>> np.median(t["int8"]) / np.median(t["fp32"])                                       # doctest: +SKIP
    """
    if not models:
        raise ConfigError("time_interleaved needs at least one model, e.g. time_interleaved({'fp32': model}, x)")
    if runs < 1 or warmup < 0:
        raise ConfigError(f"runs={runs} must be >= 1 and warmup={warmup} >= 0")
    adapters = {n: adapt(m) for n, m in models.items()}
    prepared = {n: a.prepare(inputs) for n, a in adapters.items()}
    return _time_interleaved(adapters, prepared, threads, warmup, runs, progress=False)


def _time_interleaved(adapters: dict[str, ModelAdapter], prepared: dict[str, Any], threads: int | None,
                      warmup: int, runs: int, progress: bool) -> dict[str, list[float]]:
    names = list(adapters)
    samples: dict[str, list[float]] = {n: [] for n in names}
    with contextlib.ExitStack() as stack:
        for a in adapters.values():
            stack.enter_context(a.threads(threads))
        bar = _progress(stack, progress, warmup + runs)
        for r in range(warmup + runs):
            shift = r % len(names)
            for n in names[shift:] + names[:shift]:
                a, p = adapters[n], prepared[n]
                t0 = time.perf_counter_ns()
                a.run(p)
                dt = (time.perf_counter_ns() - t0) / 1e6
                if r >= warmup:
                    samples[n].append(dt)
                # Let thread pools that spin after a call (ONNX Runtime, OpenMP) go idle before the next
                # variant starts, so no variant is timed while another one's workers still hold the cores.
                time.sleep(_COOLDOWN_S)
            if bar is not None:
                bar()
    return samples


def _progress(stack: contextlib.ExitStack, enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import Progress

    prog = stack.enter_context(Progress(transient=True))
    task = prog.add_task("timing (interleaved)", total=total)
    return lambda: prog.advance(task)


