"""Measuring causal LMs: perplexity, KLD and top-1 agreement to a reference, decode/prefill speed.

Any object with the :class:`LanguageModel` methods is measured the same way (the torch
:class:`CausalLM`, or a llama.cpp-backed model), so variants from different runtimes sit in one
interleaved comparison. Quality follows llama.cpp's ``perplexity --kl-divergence``: every model
scores the same token windows; KLD is the mean over tokens of KL(reference || model) between the
next-token distributions, top-1 agreement the share of tokens where both rank the same token first.

Timing, per interleaved round and model: the first token after a 512-token prompt (time to first
token; prefill tokens/s = 512 / that time), and 1 + 128 tokens after a short prompt with EOS
ignored (decode tokens/s = 128 / (that time - the short prompt's first-token time)), batch 1.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, DataError, ModelError
from ..measure import Comparison, Measurement, ModelAdapter, adapt, register_adapter, register_task, torch_peak_memory

__all__ = ["LanguageModel", "LMAdapter", "compare_lm", "kld_top1"]

PREFILL_TOKENS = 512
DECODE_TOKENS = 128
_SHORT_PROMPT = 16
_COOLDOWN_S = 0.005


@runtime_checkable
class LanguageModel(Protocol):
    """What slimstack measures in a language model. Optional extras an implementation may add:
    ``prefill(ids)`` (one forward over a prompt, timed for prefill speed instead of a one-token
    generate), ``size_bytes()``, ``memory_bytes()`` (resident bytes of its weights), ``kind``."""

    def tokenize(self, text: Any) -> np.ndarray: ...

    def logprobs(self, text: Any, max_tokens: int = 1024) -> tuple[np.ndarray, np.ndarray]: ...

    def generate(self, prompt: Any, max_new_tokens: int = 64, ignore_eos: bool = False) -> str: ...


def kld_top1(ref_lp: np.ndarray, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token KL(ref || model) and top-1 agreement from two (n, vocab) log-probability arrays."""
    if ref_lp.shape != lp.shape:
        raise ModelError(f"the reference gives log-probabilities of shape {ref_lp.shape}, the model {lp.shape}; "
                         "compare models with the same vocabulary")
    ref64 = ref_lp.astype(np.float64)
    kl = (np.exp(ref64) * (ref64 - lp.astype(np.float64))).sum(axis=1)
    return np.maximum(kl, 0.0), (ref_lp.argmax(1) == lp.argmax(1))


class LMAdapter(ModelAdapter):
    """The measurement adapter for anything that follows :class:`LanguageModel`."""

    output = "logprobs"
    text_input = True

    def __init__(self, model: Any):
        super().__init__(model)
        self.kind = str(getattr(model, "kind", None) or "torch-causal-lm")

    def prepare(self, inputs: Any) -> Any:
        raise DataError("a causal LM is measured on text: pass a task 'lm' dataset, e.g. "
                        "ss.datasets.load('pytorch_readme') or ss.datasets.load('notes.txt')")

    def _module(self):
        import torch

        return self.model if isinstance(self.model, torch.nn.Module) else None

    def params(self) -> tuple[int | None, int | None]:
        module = self._module()
        if module is None:
            hook = getattr(self.model, "params", None)
            return hook() if callable(hook) else (None, None)
        import torch

        total = nonzero = 0
        for p in module.parameters():
            total += p.numel()
            nonzero += int(torch.count_nonzero(p.detach()))
        return total, nonzero

    def size_bytes(self) -> int | None:
        hook = getattr(self.model, "size_bytes", None)
        return int(hook()) if callable(hook) else super().size_bytes()

    def weight_bytes(self) -> int | None:
        hook = getattr(self.model, "memory_bytes", None)
        if callable(hook):
            return int(hook())
        module = self._module()
        if module is None:
            return None
        seen, total = set(), 0
        for t in list(module.parameters()) + list(module.buffers()):
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
        return total

    def working_memory(self, ids: np.ndarray) -> int | None:
        if self._module() is None:
            return None
        return torch_peak_memory(lambda: self.model.logprobs(ids))

    def first_token(self, ids: np.ndarray) -> float:
        """Seconds from a prompt to its first generated token (prefill plus one step)."""
        hook = getattr(self.model, "prefill", None)
        t0 = time.perf_counter()
        if callable(hook):
            hook(ids)
        else:
            self.model.generate(ids, max_new_tokens=1, ignore_eos=True)
        return time.perf_counter() - t0

    def generate_seconds(self, ids: np.ndarray, n: int) -> float:
        t0 = time.perf_counter()
        self.model.generate(ids, max_new_tokens=n, ignore_eos=True)
        return time.perf_counter() - t0


def _lm_factory(model: Any) -> ModelAdapter | None:
    if all(callable(getattr(model, m, None)) for m in ("tokenize", "logprobs", "generate")):
        return LMAdapter(model)
    return None


register_adapter(_lm_factory, priority=10)


def _prompts(ids: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    n_prefill = min(PREFILL_TOKENS, context - 1)
    if len(ids) < n_prefill:  # a short text: repeat it to fill the prompt
        ids = np.resize(ids, n_prefill)
    return ids[:n_prefill].copy(), ids[:_SHORT_PROMPT].copy()


def compare_lm(models: dict[str, Any], data: Any, *, threads: int | None = 2, warmup: int = 1, runs: int = 3,
               reference: Any = None, quality: bool = True, cost: bool = True, max_windows: int | None = None,
               progress: bool = False) -> Comparison:
    """``ss.compare`` for causal LMs on a task-``"lm"`` dataset (see the module docstring)."""
    from ..datasets import token_windows
    adapters = {n: adapt(m) for n, m in models.items()}
    bad = [n for n, a in adapters.items() if not isinstance(a, LMAdapter)]
    if bad:
        raise ModelError(f"models {bad} are not language models (they lack tokenize/logprobs/generate); "
                         "a task 'lm' dataset measures causal LMs only")
    first = next(iter(models.values()))
    windows = token_windows(data, first, max_windows=max_windows)
    probe = "\n\n".join(data.texts)[:2000]
    for n, m in list(models.items())[1:] + ([("reference", reference)] if reference is not None else []):
        if not np.array_equal(np.asarray(m.tokenize(probe)), np.asarray(first.tokenize(probe))):
            raise ModelError(f"{n!r} tokenizes the text differently from {next(iter(models))!r}; perplexity, KLD "
                             "and top-1 agreement need models that share one tokenizer")
    context = min(int(getattr(m, "context_length", 2048)) for m in models.values())
    if context < _SHORT_PROMPT + DECODE_TOKENS + 1:
        raise ConfigError(f"the models' context of {context} tokens is too short to time {DECODE_TOKENS} decoded "
                          f"tokens; measure them with cost=False or quality only")
    long_prompt, short_prompt = _prompts(np.concatenate(windows), context)

    stats = {n: {"nll": 0.0, "n": 0, "kl": [], "top1": []} for n in models}
    if quality:
        with _threads(adapters.values(), threads):
            for w in windows:
                ref_lp = reference.logprobs(w, max_tokens=len(w))[1] if reference is not None else None
                for n, m in models.items():
                    lp = m.logprobs(w, max_tokens=len(w))[1]
                    s = stats[n]
                    s["nll"] -= float(lp[np.arange(len(w) - 1), w[1:]].astype(np.float64).sum())
                    s["n"] += len(w) - 1
                    if ref_lp is not None:
                        kl, top = kld_top1(ref_lp, lp)
                        s["kl"].append(kl)
                        s["top1"].append(top)

    timing = {n: {"ttft": [], "decode": []} for n in models}
    if cost:
        names = list(models)
        with _threads(adapters.values(), threads):
            for r in range(warmup + runs):
                shift = r % len(names)
                for n in names[shift:] + names[:shift]:
                    a = adapters[n]
                    ttft = a.first_token(long_prompt)
                    first_short = a.generate_seconds(short_prompt, 1)
                    total = a.generate_seconds(short_prompt, DECODE_TOKENS + 1)
                    if r >= warmup:
                        timing[n]["ttft"].append(ttft)
                        timing[n]["decode"].append(max(total - first_short, 1e-9))
                    time.sleep(_COOLDOWN_S)

    out: dict[str, Measurement] = {}
    for n, a in adapters.items():
        s, t = stats[n], timing[n]
        metrics: dict[str, float] = {}
        notes: list[str] = []
        if quality and s["n"]:
            metrics["perplexity"] = float(np.exp(s["nll"] / s["n"]))
            metrics["nll"] = s["nll"] / s["n"]
            metrics["tokens_scored"] = float(s["n"])
            if s["kl"]:
                kl = np.concatenate(s["kl"])
                metrics["kld"] = float(kl.mean())
                metrics["kld_p99"] = float(np.percentile(kl, 99))
                metrics["top1_agreement"] = float(np.concatenate(s["top1"]).mean())
        latency = throughput = float("nan")
        decode_ms: list[float] = []
        if cost and t["decode"]:
            decode_ms = [1e3 * d / DECODE_TOKENS for d in t["decode"]]
            latency = float(np.median(decode_ms))
            throughput = 1e3 / latency
            ttft = float(np.median(t["ttft"]))
            metrics.update(decode_tokens_per_s=throughput, prefill_tokens_per_s=len(long_prompt) / ttft,
                           ttft_ms=1e3 * ttft)
        params = nonzero = size = peak = None
        if cost:
            with a.threads(threads):
                params, nonzero = a.params()
                size = a.size_bytes()
                weights, work = a.weight_bytes(), a.working_memory(long_prompt)
            if weights is not None:
                peak = weights + (work or 0)
                notes.append(f"peak memory: weights {weights:,} B + working tensors of a {len(long_prompt)}-token "
                             f"forward {work if work is not None else 'not traced'} B")
            if size is None:
                notes.append("size: this model kind has no ss.save format")
        out[n] = Measurement(
            name=n, kind=a.kind, task="lm", quality=metrics.get("perplexity"), quality_metric="perplexity",
            metrics=metrics, latency_ms=latency, latency_p90_ms=float(np.percentile(decode_ms, 90)) if decode_ms
            else float("nan"), throughput=throughput, batch_size=1, threads=threads, runs=runs, size_bytes=size,
            params=params, nonzero_params=nonzero, macs=None, peak_memory_bytes=peak,
            n_samples=len(windows), latency_samples_ms=decode_ms, notes=notes, higher_is_better=False,
        )
    return Comparison(out, baseline=next(iter(models)))


@contextlib.contextmanager
def _threads(adapters, threads: int | None):
    with contextlib.ExitStack() as stack:
        for a in adapters:
            stack.enter_context(a.threads(threads))
        yield


register_task("lm", compare_lm, warmup=1, runs=3)  # ss.measure/ss.compare of task "lm" text come here
