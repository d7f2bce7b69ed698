"""``LlamaCppLM``: a GGUF file run by llama.cpp (llama-cpp-python), with the ``CausalLM`` methods.

Two contexts share the memory-mapped weights: one keeps only the last logits (generation, where
copying a whole prompt's logits would slow prefill) and one keeps every position's logits
(``logits_all``, for :meth:`logprobs` and :meth:`perplexity`). Thread counts are fixed at
construction so timings are reproducible.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ....errors import DataError, ModelError

__all__ = ["LlamaCppLM", "llama_cpp_available", "SLIMSTACK_KEY"]

SLIMSTACK_KEY = "slimstack.quantize"  # GGUF metadata key slimstack writes: its record, as JSON


def llama_cpp_available() -> tuple[bool, str]:
    """Whether llama-cpp-python imports; the reason when it does not."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as exc:  # ImportError, or a broken shared library (OSError)
        return False, f"llama-cpp-python is not importable ({type(exc).__name__}: {exc}); install it with " \
                      "`make install-llm` (builds llama.cpp for this CPU)"
    return True, ""


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return (x - np.log(np.exp(x).sum(axis=-1, keepdims=True))).astype(np.float32)


class LlamaCppLM:
    """A causal LM served by llama.cpp from a GGUF file: ``generate``, ``chat``, ``logprobs``, ``perplexity``.

    Examples
    --------
    >>> lm = LlamaCppLM("model.gguf", n_threads=2)          # doctest: +SKIP
    >>> lm.generate("The capital of France is", max_new_tokens=8)   # doctest: +SKIP
    """

    backend = "llamacpp"

    def __init__(self, path: str | Path, *, n_threads: int = 2, n_ctx: int = 2048, record: dict | None = None):
        ok, why = llama_cpp_available()
        if not ok:
            raise ModelError(why)
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"no GGUF file at {str(self.path)!r}")
        self.n_threads, self.n_ctx = int(n_threads), int(n_ctx)
        self.record = record
        self._ctx: dict[bool, Any] = {}
        meta = self._llm(False).metadata
        self.metadata = dict(meta)
        self.eos_token_id = int(meta.get("tokenizer.ggml.eos_token_id", -1))
        self.chat_template = meta.get("tokenizer.chat_template")

    def _llm(self, logits_all: bool) -> Any:
        if logits_all not in self._ctx:
            import llama_cpp

            self._ctx[logits_all] = llama_cpp.Llama(
                model_path=str(self.path), n_ctx=self.n_ctx, n_batch=512, n_threads=self.n_threads,
                n_threads_batch=self.n_threads, logits_all=logits_all, verbose=False, seed=0)
        return self._ctx[logits_all]

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size

    def tokenize(self, text: Any) -> list[int]:
        """Token ids of ``text``; a sequence of ints (e.g. a token window) is taken as it is, as ``CausalLM`` does."""
        if not isinstance(text, str):
            return [int(t) for t in np.asarray(text, dtype=np.int64).ravel()]
        return list(self._llm(False).tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def _check_len(self, n: int, what: str) -> None:
        if n >= self.n_ctx:
            raise DataError(f"{what} is {n} tokens, longer than the context of {self.n_ctx}; shorten it or "
                            "load with a larger n_ctx")

    def generate(self, prompt: str, max_new_tokens: int = 64, ignore_eos: bool = False, *,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0,
                 seed: int = 0) -> str:
        """Continue ``prompt``: greedy unless ``do_sample``; stops at end-of-sequence unless ``ignore_eos``."""
        ids = self.tokenize(prompt)
        out = self.generate_ids(ids, max_new_tokens, ignore_eos, do_sample=do_sample, temperature=temperature,
                                top_k=top_k, top_p=top_p, seed=seed)
        return self._llm(False).detokenize(out).decode("utf-8", errors="replace")

    def generate_ids(self, ids: list[int], max_new_tokens: int = 64, ignore_eos: bool = False, *,
                     do_sample: bool = False, temperature: float = 1.0, top_k: int = 50, top_p: float = 1.0,
                     seed: int = 0) -> list[int]:
        """Token ids in, new token ids out (batch 1, one token per step)."""
        self._check_len(len(ids) + max_new_tokens, "prompt plus max_new_tokens")
        llm = self._llm(False)
        llm.reset()
        llm.eval(list(ids))
        rng = np.random.default_rng(seed)
        out: list[int] = []
        for _ in range(int(max_new_tokens)):
            logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            tok = self._pick(logits, do_sample, temperature, top_k, top_p, rng)
            if tok == self.eos_token_id and not ignore_eos:
                break
            out.append(tok)
            llm.eval([tok])
        return out

    @staticmethod
    def _pick(logits: np.ndarray, sample: bool, temperature: float, top_k: int, top_p: float,
              rng: np.random.Generator) -> int:
        if not sample:
            return int(np.argmax(logits))
        z = logits / max(float(temperature), 1e-6)
        if top_k and top_k < z.size:
            z = np.where(z >= np.partition(z, -top_k)[-top_k], z, -np.inf)
        p = np.exp(z - z.max())
        p /= p.sum()
        if top_p < 1.0:
            order = np.argsort(-p)
            keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p) + 1)]
            mask = np.zeros_like(p)
            mask[keep] = p[keep]
            p = mask / mask.sum()
        return int(rng.choice(p.size, p=p))

    def chat(self, messages: list[dict[str, str]], max_new_tokens: int = 64, **kw: Any) -> str:
        """Answer the conversation with the chat template stored in the GGUF file."""
        if not self.chat_template:
            raise ModelError(f"{self.path.name} carries no chat template (tokenizer.chat_template); use generate")
        import jinja2

        env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=False, lstrip_blocks=False)
        text = env.from_string(self.chat_template).render(messages=messages, add_generation_prompt=True,
                                                          bos_token="", eos_token="")
        return self.generate(text, max_new_tokens=max_new_tokens, **kw).strip()

    def logprobs_ids(self, ids: list[int]) -> np.ndarray:
        """(len(ids), vocab) log-probabilities of the token after each position."""
        self._check_len(len(ids), "text")
        llm = self._llm(True)
        llm.reset()
        llm.eval(list(ids))
        return _log_softmax(np.asarray(llm.scores[: len(ids)], dtype=np.float32))

    def logprobs(self, text: str, max_tokens: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of ``text`` (first ``max_tokens``) and each position's next-token log-probabilities."""
        ids = self.tokenize(text)[: int(max_tokens)]
        if not ids:
            raise DataError("logprobs got an empty text; pass at least one token of text")
        return np.asarray(ids, dtype=np.int64), self.logprobs_ids(ids)

    def perplexity(self, texts: str | list[str], max_tokens: int = 1024) -> float:
        """exp(mean negative log-likelihood) of every token after the first, over ``texts``."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        nll, n = 0.0, 0
        for t in texts:
            ids, lp = self.logprobs(t, max_tokens)
            if len(ids) < 2:
                continue
            nll -= float(lp[np.arange(len(ids) - 1), ids[1:]].sum())
            n += len(ids) - 1
        if n == 0:
            raise DataError("perplexity needs texts of at least two tokens")
        return float(np.exp(nll / n))

    def save(self, path: str | Path) -> Path:
        """Copy the GGUF file to ``path`` (a .gguf file, or a folder that gets ``model.gguf``)."""
        path = Path(path)
        if path.suffix != ".gguf":
            path.mkdir(parents=True, exist_ok=True)
            path = path / "model.gguf"
        if path.resolve() != self.path.resolve():
            shutil.copyfile(self.path, path)
        return path

    def close(self) -> None:
        for llm in self._ctx.values():
            llm.close()
        self._ctx.clear()

    def __repr__(self) -> str:
        return f"LlamaCppLM({str(self.path)!r}, n_threads={self.n_threads}, {self.file_bytes / 1e6:.1f} MB)"
