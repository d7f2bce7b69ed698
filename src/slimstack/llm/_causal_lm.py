"""A causal language model: a transformers ``PreTrainedModel`` plus its tokenizer, one interface.

:class:`CausalLM` is an ``nn.Module`` (``forward(input_ids) -> logits``), so pruning, quantization
and distillation can walk its layers like any other model, and it carries the text-level verbs a
user wants from a language model: ``generate``, ``chat``, ``logprobs``, ``perplexity``. Every
verb that takes text also takes a sequence of token ids, so measurement can feed every model the
very same tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError, ShapeError

__all__ = ["CausalLM", "TokenInput"]

TokenInput = str | Sequence[int] | np.ndarray

_DEFAULT_CONTEXT = 2048


class CausalLM(nn.Module):
    """A decoder-only language model with its tokenizer.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A ``*ForCausalLM`` / ``*LMHeadModel`` whose forward returns ``.logits``.
    tokenizer : transformers tokenizer
        The model's tokenizer; its chat template drives :meth:`chat`.
    name : str, optional
        A label for reports (``"SmolLM2-135M-Instruct"``).

    Examples
    --------
    >>> lm = ss.zoo.smollm2()                                              # doctest: +SKIP
    >>> lm.chat([{"role": "user", "content": "What is the capital of France?"}])   # doctest: +SKIP
    'The capital of France is Paris.'
    """

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str | None = None):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.model.eval()
        self.eval()

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def context_length(self) -> int:
        """Longest token sequence the model accepts (prompt plus generated tokens)."""
        cfg = self.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return _DEFAULT_CONTEXT

    @property
    def vocab_size(self) -> int:
        out = self.model.get_output_embeddings()
        if out is not None and getattr(out, "weight", None) is not None:
            return int(out.weight.shape[0])
        return int(self.config.vocab_size)

    @property
    def eos_token_id(self) -> int | None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if eos is None:
            eos = getattr(self.config, "eos_token_id", None)
        if isinstance(eos, list | tuple):
            eos = eos[0] if eos else None
        return eos

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return f"CausalLM({self.name!r}, {type(self.model).__name__}, {n / 1e6:.1f}M parameters)"

    # ------------------------------------------------------------------ tokens
    def tokenize(self, text: TokenInput) -> np.ndarray:
        """Token ids of ``text`` (int64), with the tokenizer's own special-token rules.

        A sequence of ints is returned as it is, so every verb takes text or token ids.
        """
        if isinstance(text, str):
            ids = self.tokenizer(text)["input_ids"]
            return np.asarray(ids, dtype=np.int64)
        ids = np.asarray(text, dtype=np.int64)
        if ids.ndim != 1:
            raise ShapeError(f"token ids must be one flat sequence, got an array of shape {ids.shape}; "
                             "pass one text or one list of ids at a time")
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def _check_fits(self, n_tokens: int, what: str, fix: str) -> None:
        if n_tokens > self.context_length:
            raise ShapeError(f"{what} is {n_tokens} tokens, longer than the model's context of "
                             f"{self.context_length} tokens; {fix}")

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits, shape (batch, sequence, vocab)."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def _logits(self, ids: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self(torch.as_tensor(ids, dtype=torch.long)[None]).float()[0]

    def logprobs(self, text: TokenInput, max_tokens: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of ``text`` (first ``max_tokens``) and their next-token log-probabilities.

        Returns
        -------
        ids : np.ndarray (n,) int64
        logprobs : np.ndarray (n, vocab) float32
            Row ``i`` is the log-distribution of the token that follows ``ids[: i + 1]``.
        """
        max_tokens = _positive_int(max_tokens, "max_tokens")
        ids = self.tokenize(text)[:max_tokens]
        if len(ids) == 0:
            raise DataError("logprobs got an empty text (0 tokens); pass at least one token of text")
        self._check_fits(len(ids), "the text", f"pass max_tokens <= {self.context_length}")
        logits = self._logits(ids)
        return ids, torch.log_softmax(logits, dim=-1).numpy()

    def nll(self, text: TokenInput, max_tokens: int | None = None) -> tuple[float, int]:
        """Summed negative log-likelihood of ``text``'s tokens after the first, and their count.

        Texts longer than the context are scored in consecutive windows of the context length.
        """
        ids = self.tokenize(text)
        if max_tokens is not None:
            ids = ids[: _positive_int(max_tokens, "max_tokens")]
        total, count = 0.0, 0
        for start in range(0, len(ids), self.context_length):
            window = ids[start : start + self.context_length]
            if len(window) < 2:
                continue
            logp = torch.log_softmax(self._logits(window)[:-1], dim=-1)
            target = torch.as_tensor(window[1:], dtype=torch.long)
            total -= float(logp.gather(1, target[:, None]).sum())
            count += len(window) - 1
        return total, count

    def perplexity(self, texts: TokenInput | Iterable[TokenInput], max_tokens: int | None = None) -> float:
        """Token-weighted perplexity: ``exp(sum of NLL / number of predicted tokens)`` over ``texts``.

        ``texts`` is one text, a list of texts, or a list of token-id windows.
        """
        if isinstance(texts, str) or (isinstance(texts, np.ndarray) and texts.ndim == 1):
            texts = [texts]
        total, count = 0.0, 0
        for text in texts:
            t, c = self.nll(text, max_tokens)
            total, count = total + t, count + c
        if count == 0:
            raise DataError("perplexity needs at least one text of two or more tokens; the texts given are empty")
        return float(np.exp(total / count))

    # ------------------------------------------------------------------ generation
    def generate_ids(self, prompt: TokenInput, max_new_tokens: int = 64, *, ignore_eos: bool = False,
                     do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                     seed: int | None = None) -> np.ndarray:
        """The new token ids generated after ``prompt`` (greedy unless ``do_sample``)."""
        max_new_tokens = _positive_int(max_new_tokens, "max_new_tokens")
        ids = self.tokenize(prompt)
        if len(ids) == 0:
            raise DataError("generate got an empty prompt (0 tokens); pass some text")
        self._check_fits(len(ids) + max_new_tokens, f"the prompt ({len(ids)} tokens) plus max_new_tokens="
                         f"{max_new_tokens}", "shorten the prompt or lower max_new_tokens")
        if temperature <= 0:
            raise ConfigError(f"temperature={temperature} must be > 0; use do_sample=False for greedy decoding")
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p={top_p} must be in (0, 1]")
        if top_k < 0:
            raise ConfigError(f"top_k={top_k} must be >= 0 (0 turns top-k filtering off)")
        input_ids = torch.as_tensor(ids, dtype=torch.long)[None]
        kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": bool(do_sample),
                              "attention_mask": torch.ones_like(input_ids),
                              "pad_token_id": self.eos_token_id if self.eos_token_id is not None else 0}
        if do_sample:
            kw.update(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
        else:  # greedy: clear sampling defaults a generation_config may carry, so none is warned about
            kw.update(temperature=None, top_p=None, top_k=None)
        if ignore_eos:
            kw["min_new_tokens"] = max_new_tokens
        rng = torch.random.fork_rng() if seed is not None else contextlib.nullcontext()
        with rng, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(int(seed))
            out = self.model.generate(input_ids, **kw)
        return out[0, len(ids):].numpy()

    def generate(self, prompt: TokenInput, max_new_tokens: int = 64, ignore_eos: bool = False, *,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 seed: int | None = None) -> str:
        """Continue ``prompt`` by up to ``max_new_tokens`` tokens; returns only the new text.

        Greedy by default. ``do_sample=True`` samples with ``temperature``, ``top_p`` and ``top_k``
        (0: off), reproducibly for a given ``seed``. ``ignore_eos=True`` always generates exactly
        ``max_new_tokens`` tokens (for timing).
        """
        new = self.generate_ids(prompt, max_new_tokens, ignore_eos=ignore_eos, do_sample=do_sample,
                                temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
        return self.decode(new)

    def chat_ids(self, messages: list[dict[str, str]]) -> np.ndarray:
        """Token ids of ``messages`` rendered with the chat template, ready for the assistant's turn."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"{self.name} has no chat template in its tokenizer; use generate(prompt) instead")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                     for m in messages):
            raise DataError("messages must be a list of {'role': ..., 'content': ...} dicts, e.g. "
                            "[{'role': 'user', 'content': 'Hello'}]")
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return np.asarray(ids, dtype=np.int64)

    def chat(self, messages: list[dict[str, str]], max_new_tokens: int = 64, **kw: Any) -> str:
        """Answer a conversation (``[{"role": "user", "content": ...}, ...]``) with the model's template.

        Takes the same options as :meth:`generate`.
        """
        return self.generate(self.chat_ids(messages), max_new_tokens, **kw).strip()


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return int(value)
