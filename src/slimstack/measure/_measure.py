"""``ss.measure`` and ``ss.compare``: quality, size and speed, timed interleaved in one process."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._utils import any_grad_mode
from ..datasets import Dataset
from ..errors import ConfigError, DataError, ShapeError
from ._adapters import ModelAdapter, adapt
from ._labels import model_classes, unknown_classes
from ._metrics import cosine_fidelity
from ._results import Comparison, Measurement
from ._score import as_dataset, model_inputs, model_outputs, modes_kept, primary_metric, quality_metrics, task_comparer
from ._timing import _time_interleaved

__all__ = ["measure", "compare"]



@any_grad_mode
def measure(
    model: Any,
    data: Dataset | str,
    *,
    batch_size: int = 256,
    threads: int | None = 2,
    warmup: int | None = None,
    runs: int | None = None,
    reference: Any = None,
    name: str = "model",
    quality: bool = True,
    cost: bool = True,
) -> Measurement:
    """Measure one model's quality, size and speed on ``data``.

    Parameters
    ----------
    model : nn.Module, sentence encoder, scikit-learn estimator, ss.io.OnnxModel, ...
    data : Dataset or str
        A dataset, or a built-in name (its test split is used).
    batch_size : int
        Rows per timed forward call; ``latency_ms`` is the median time of one such call.
    threads : int or None
        Intra-op threads, fixed for the measurement and recorded (None leaves the setting alone).
    warmup, runs : int, optional
        Untimed and timed interleaved rounds: 3 and 20 by default; for causal LMs on a task
        ``"lm"`` dataset 1 and 3 (each round decodes 128 tokens).
    reference : model or array, optional
        Adds ``cosine_fidelity``: mean cosine similarity of the outputs to the reference's. For
        causal LMs: ``kld`` (mean KL(reference || model) of next-token distributions) and
        ``top1_agreement``; their quality is ``perplexity`` (lower is better).

    Examples
    --------
    >>> m = ss.measure(model, ss.datasets.load("digits", split="test"))   # doctest: +SKIP
    >>> m.quality, m.latency_ms, m.size_bytes                              # doctest: +SKIP
    """
    c = compare({name: model}, data, batch_size=batch_size, threads=threads, warmup=warmup, runs=runs,
                reference=reference, quality=quality, cost=cost)
    return c.measurements[name]


@any_grad_mode
def compare(
    models: dict[str, Any],
    data: Dataset | str,
    *,
    batch_size: int = 256,
    threads: int | None = 2,
    warmup: int | None = None,
    runs: int | None = None,
    reference: Any = None,
    quality: bool = True,
    cost: bool = True,
    progress: bool = False,
) -> Comparison:
    """Measure several models side by side; the first is the baseline for ratios.

    Timing is interleaved: each round runs every model once on the same prepared batch, rotating
    the order, so drifts in machine load (other processes, thermal state) hit every variant alike.
    Latency is the median of ``runs`` rounds after ``warmup`` rounds.

    Examples
    --------
    >>> c = ss.compare({"fp32": model, "int8": q.model}, ds)      # doctest: +SKIP
    >>> c.ratio("int8", "fp32", "latency_ms")                      # doctest: +SKIP
    """
    if not models:
        raise ConfigError("ss.compare needs at least one model, e.g. compare({'fp32': model}, data)")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be a positive integer")
    data = as_dataset(data)
    other = task_comparer(data.task)  # e.g. causal LMs on task "lm" text: perplexity/KLD, decode speed
    warmup = (other.warmup if other else 3) if warmup is None else warmup
    runs = (other.runs if other else 20) if runs is None else runs
    if runs < 1 or warmup < 0:
        raise ConfigError(f"runs={runs} must be >= 1 and warmup={warmup} >= 0")
    # measuring runs modules in eval mode; the caller's train/eval flags come back afterwards
    with modes_kept([*models.values(), reference]):
        if other is not None:
            return other.compare(models, data, threads=threads, warmup=warmup, runs=runs, reference=reference,
                                 quality=quality, cost=cost, progress=progress)
        return _compare(models, data, batch_size, threads, warmup, runs, reference, quality, cost, progress)


def _compare(models, data, batch_size, threads, warmup, runs, reference, quality, cost, progress) -> Comparison:
    adapters = {n: adapt(m) for n, m in models.items()}
    lms = [n for n, a in adapters.items() if a.output == "logprobs"]
    if lms:
        raise DataError(f"{lms} are causal LMs, measured on text: pass a task 'lm' dataset such as "
                        f"ss.datasets.load('pytorch_readme'), not {data.name!r} (task {data.task!r})")
    inputs_all = model_inputs(data, adapters)
    ref_out = None
    if reference is not None:
        ref_out = reference if isinstance(reference, np.ndarray) else model_outputs(adapt(reference), inputs_all, batch_size, threads)

    batch = _latency_batch(inputs_all, batch_size)
    prepared = {n: a.prepare(batch) for n, a in adapters.items()}
    for n, a in adapters.items():
        _check_runs(n, a, prepared[n], batch)
    samples = _time_interleaved(adapters, prepared, threads, warmup, runs, progress)

    out: dict[str, Measurement] = {}
    for n, a in adapters.items():
        metrics: dict[str, float] = {}
        notes: list[str] = []
        if quality:
            outputs = model_outputs(a, inputs_all, batch_size, threads)
            metrics = quality_metrics(a, outputs, data)  # the scoring ss.measure.score uses
            unknown = unknown_classes(a, data)
            if unknown:
                notes.append(f"model {n!r} does not know class(es) {', '.join(map(repr, unknown[:10]))} of "
                             f"{data.name!r} (its classes: {', '.join(map(repr, model_classes(a).tolist()[:10]))}); "
                             "those rows count as wrong")
                warnings.warn(notes[-1], UserWarning, stacklevel=3)
            if ref_out is not None:
                metrics["cosine_fidelity"] = cosine_fidelity(outputs, ref_out)
        metric = primary_metric(data, models[n])
        params = nonzero = macs = size = peak = None
        if cost:
            with a.threads(threads):
                params, nonzero = a.params()
                size = a.size_bytes()
                one = a.prepare(_latency_batch(inputs_all, 1))
                macs = a.macs(one)
                peak = a.peak_memory(prepared[n])
            if macs is None:
                notes.append("MACs not counted for this model kind")
        t = np.asarray(samples[n])
        median = float(np.median(t))
        out[n] = Measurement(
            name=n, kind=a.kind, task=data.task, quality=metrics.get(metric), quality_metric=metric,
            metrics=metrics, latency_ms=median, latency_p90_ms=float(np.percentile(t, 90)),
            throughput=float(len(batch) / (median / 1e3)), batch_size=len(batch), threads=threads, runs=runs,
            size_bytes=size, params=params, nonzero_params=nonzero, macs=macs, peak_memory_bytes=peak,
            n_samples=len(data), latency_samples_ms=[float(x) for x in t], notes=notes,
        )
    return Comparison(out, baseline=next(iter(models)))


def _latency_batch(inputs: Any, batch_size: int) -> Any:
    n = len(inputs)
    idx = np.arange(batch_size) % n  # cycle when the data holds fewer rows than one batch
    if isinstance(inputs, np.ndarray):
        return np.ascontiguousarray(inputs[idx])
    return [inputs[i] for i in idx]


def _check_runs(name: str, adapter: ModelAdapter, prepared: Any, batch: Any) -> None:
    try:
        with adapter.threads(1):
            adapter.run(prepared)
    except (RuntimeError, ValueError) as exc:
        shape = getattr(batch, "shape", None)
        raise ShapeError(
            f"model {name!r} cannot run on inputs of shape {shape}: {str(exc).splitlines()[0]}. "
            "Pass data whose sample shape fits the model (e.g. digits images are (n, 1, 8, 8); "
            "use ds.flat() for (n, 64))"
        ) from exc


