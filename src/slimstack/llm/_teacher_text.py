"""Teacher-generated text: unlabelled training text for distillation, sampled from the teacher itself.

Distilling a pruned LM needs text; the teacher can write as much as wanted. Prompts are short
token windows cut at evenly spaced points of some seed text (so the samples start in the domain
the user cares about); each continues for up to ``max_new_tokens`` sampled tokens (it stops at end-of-sequence). Any model with
``generate_ids`` and ``decode``/``detokenize`` works: a :class:`CausalLM`, or a GGUF copy of the
teacher run by llama.cpp (``LlamaCppLM``), which samples several times faster on a CPU. Keep the
text you evaluate on out of the seed text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["teacher_text"]


def _ids(lm: Any, text: str) -> list[int]:
    return [int(t) for t in np.asarray(lm.tokenize(text), dtype=np.int64).ravel()]


def _decode(lm: Any, ids: list[int]) -> str:
    if hasattr(lm, "decode"):
        return lm.decode(ids)
    return lm._llm(False).detokenize(ids).decode("utf-8", errors="replace")  # LlamaCppLM


def teacher_text(lm: Any, seed_text: Any, *, n: int = 32, prompt_tokens: int = 16, max_new_tokens: int = 128,
                 temperature: float = 1.0, top_p: float = 0.95, seed: int = 0) -> list[str]:
    """``n`` texts, each a ``prompt_tokens``-token prompt from ``seed_text`` continued by ``lm`` (sampled).

    Parameters
    ----------
    lm : CausalLM or LlamaCppLM
        The teacher (or a faster copy of it, e.g. its Q8_0 GGUF in llama.cpp).
    seed_text : str, list of str, or task-"lm" Dataset
        Where prompts are cut from: ``n`` windows at evenly spaced token offsets of the joined text.
    n, prompt_tokens, max_new_tokens : int
        How many texts, how long each prompt, how many tokens each continuation adds.
    temperature, top_p : float
        Sampling settings (``top_p=1`` samples from the full distribution).
    seed : int
        Text ``i`` is sampled with seed ``seed + i``: the same call gives the same texts.

    Examples
    --------
    >>> texts = ss.llm.teacher_text(teacher, ss.datasets.load("notes.txt"), n=64)   # doctest: +SKIP
    >>> r = ss.prune(teacher, ss.WidthPruning(ffn_ratio=0.25, recovery="distill"),
    ...              calibration=texts, train=texts)                                 # doctest: +SKIP
    """
    from ..datasets import Dataset

    for name, value in (("n", n), ("prompt_tokens", prompt_tokens), ("max_new_tokens", max_new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"teacher_text {name}={value!r} must be a positive integer")
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ConfigError(f"teacher_text temperature={temperature!r} must be > 0")
    if not (isinstance(top_p, int | float) and 0 < top_p <= 1):
        raise ConfigError(f"teacher_text top_p={top_p!r} must be in (0, 1]")
    if isinstance(seed_text, Dataset):
        seed_text = list(seed_text.texts)
    if isinstance(seed_text, str):
        seed_text = [seed_text]
    if not isinstance(seed_text, list | tuple) or not all(isinstance(t, str) for t in seed_text):
        raise DataError(f"teacher_text needs seed text (a string, a list of strings or a task-'lm' dataset) to cut "
                        f"prompts from, got {type(seed_text).__name__}")
    stream = [t for text in seed_text if text.strip() for t in _ids(lm, text)]
    if len(stream) < prompt_tokens:
        raise DataError(f"the seed text has {len(stream)} tokens, fewer than prompt_tokens={prompt_tokens}; pass "
                        "more text or a shorter prompt")
    starts = np.linspace(0, len(stream) - prompt_tokens, n).round().astype(int)
    out = []
    for i, s in enumerate(starts):
        prompt = stream[int(s): int(s) + prompt_tokens]
        new = lm.generate_ids(prompt, max_new_tokens, ignore_eos=False, do_sample=True,
                              temperature=float(temperature), top_p=float(top_p), top_k=0, seed=seed + i)
        out.append(_decode(lm, list(prompt) + [int(t) for t in new]))
    return out
