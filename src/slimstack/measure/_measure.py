"""``ss.measure`` and ``ss.compare``: quality, size and speed, timed interleaved in one process."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from ..datasets import Dataset
from ..errors import ConfigError, DataError, ShapeError
from ._adapters import ModelAdapter, adapt
from ._metrics import PRIMARY_METRIC, classification_metrics, cosine_fidelity, regression_metrics, sts_metrics
from ._results import Comparison, Measurement

__all__ = ["measure", "compare"]

_COOLDOWN_S = 0.005


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
    data = _as_dataset(data)
    if data.task != "lm":
        warmup, runs = 3 if warmup is None else warmup, 20 if runs is None else runs
    if (runs is not None and runs < 1) or (warmup is not None and warmup < 0):
        raise ConfigError(f"runs={runs} must be >= 1 and warmup={warmup} >= 0")
    if data.task == "lm":  # causal LMs: perplexity/KLD and decode/prefill speed (slimstack.llm._measure)
        from ..llm._measure import compare_lm

        return compare_lm(models, data, threads=threads, warmup=1 if warmup is None else warmup,
                          runs=3 if runs is None else runs,
                          reference=reference, quality=quality, cost=cost, progress=progress)
    adapters = {n: adapt(m) for n, m in models.items()}
    lms = [n for n, a in adapters.items() if a.output == "logprobs"]
    if lms:
        raise DataError(f"{lms} are causal LMs, measured on text: pass a task 'lm' dataset such as "
                        f"ss.datasets.load('pytorch_readme'), not {data.name!r} (task {data.task!r})")
    inputs_all = _inputs(data, adapters)
    ref_out = None
    if reference is not None:
        ref_out = reference if isinstance(reference, np.ndarray) else _outputs(adapt(reference), inputs_all, batch_size, threads)

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
            outputs = _outputs(a, inputs_all, batch_size, threads)
            metrics = _quality(a, outputs, data)
            if ref_out is not None:
                metrics["cosine_fidelity"] = cosine_fidelity(outputs, ref_out)
        metric = PRIMARY_METRIC.get(data.task, "accuracy")
        if a.output == "value" and data.task == "classification":
            metric = "accuracy"
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


def _as_dataset(data: Dataset | str) -> Dataset:
    if isinstance(data, Dataset):
        ds = data
    elif isinstance(data, str):
        from ..datasets import load

        ds = load(data, split="test")
    else:
        raise DataError(f"data must be a slimstack Dataset or a built-in name, got {type(data).__name__}; "
                        "wrap arrays with ss.datasets.from_arrays(X, y)")
    if len(ds) == 0:
        raise DataError(f"dataset {ds.name!r} (split {ds.split!r}) is empty; pass at least one row")
    if ds.X is not None and not np.isfinite(ds.X).all():
        raise DataError(f"dataset {ds.name!r} has NaN or Inf in its features; impute or drop those rows first")
    return ds


def _inputs(data: Dataset, adapters: dict[str, ModelAdapter]) -> Any:
    text = {a.text_input for a in adapters.values()}
    if len(text) > 1:
        raise DataError("ss.compare got both text and array models; compare models that take the same inputs")
    if text.pop():
        return data.sentences()
    if data.X is None:
        raise DataError(f"dataset {data.name!r} holds sentences, but the model takes arrays; "
                        "measure a sentence encoder on it, or pass an array dataset")
    return data.X


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


def _outputs(adapter: ModelAdapter, inputs: Any, batch_size: int, threads: int | None) -> np.ndarray:
    parts: list[np.ndarray] = []
    n = len(inputs)
    order = np.arange(n)
    if adapter.text_input:  # length-sorted batches pad less; the order is restored below
        order = np.argsort([-len(s) for s in inputs], kind="stable")
    with adapter.threads(threads):
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            chunk = inputs[idx] if isinstance(inputs, np.ndarray) else [inputs[i] for i in idx]
            parts.append(adapter.to_numpy(adapter.run(adapter.prepare(chunk))))
    stacked = np.concatenate(parts)
    out = np.empty_like(stacked)
    out[order] = stacked
    return out


def _quality(adapter: ModelAdapter, outputs: np.ndarray, data: Dataset) -> dict[str, float]:
    if data.task == "classification":
        kind = {"logits": "logits", "proba": "proba"}.get(adapter.output, "label")
        if kind != "label" and (outputs.ndim != 2 or outputs.shape[1] < data.n_classes):
            raise ShapeError(f"the model outputs shape {outputs.shape[1:]} per sample, but {data.name!r} has "
                             f"{data.n_classes} classes; pass a model with {data.n_classes} outputs")
        return classification_metrics(outputs, data.y, kind)
    if data.task == "regression":
        return regression_metrics(outputs, data.y)
    if data.task == "sts":
        return sts_metrics(outputs, data.scores)
    return {}
