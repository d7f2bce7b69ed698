"""A causal-LM teacher's top-k next-token distribution, computed once and cached on disk.

For every token position of every training window the teacher's distribution at temperature T is
kept as its k most likely token ids, their log-probabilities, and nothing else: the probability of
all other tokens (the "tail") is ``1 - sum(top-k probabilities)``, so it need not be stored. At
SmolLM2's 49,152-token vocabulary and k=64 this is 0.13% of the full distribution.

The file (safetensors) is named by a hash of the teacher's weights, the token windows, k and T,
so a changed teacher, text, k or temperature never reads stale targets. Under ``torchrun`` rank 0
computes and writes; the other ranks wait at the barrier and read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ._cache import cached, read_tensors, write_tensors

__all__ = ["TopK", "teacher_topk", "windows_hash"]


class TopK:
    """Teacher targets: ``logp`` (n, L, k) float32 log-probabilities at T, ``idx`` (n, L, k) int64 token ids."""

    def __init__(self, logp: torch.Tensor, idx: torch.Tensor):
        self.logp, self.idx = logp, idx

    def __len__(self) -> int:
        return len(self.logp)


def windows_hash(windows: torch.Tensor, mask: torch.Tensor) -> str:
    h = hashlib.sha256(str(tuple(windows.shape)).encode())
    h.update((windows * mask).numpy().tobytes())
    h.update(mask.numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def _run_teacher(teacher: torch.nn.Module, windows: torch.Tensor, mask: torch.Tensor, k: int, temperature: float,
                 batch_size: int) -> TopK:
    was = teacher.training
    teacher.eval()
    logps, idxs = [], []
    try:
        for start in range(0, len(windows), batch_size):
            ids, m = windows[start : start + batch_size], mask[start : start + batch_size]
            logits = teacher(ids, attention_mask=m).float()
            if not torch.isfinite(logits[m.bool()]).all():
                raise ModelError("the teacher produced NaN or inf logits on the training text; check the teacher")
            top, idx = (logits / temperature).topk(k, dim=-1)
            logps.append(top - torch.logsumexp(logits / temperature, dim=-1, keepdim=True))
            idxs.append(idx)
    finally:
        teacher.train(was)
    return TopK(torch.cat(logps).float().contiguous(), torch.cat(idxs).to(torch.int64).contiguous())


def teacher_topk(teacher: torch.nn.Module, windows: torch.Tensor, mask: torch.Tensor, *, k: int, temperature: float,
                 cache_dir: str | None = None, batch_size: int = 4, rank: int = 0,
                 barrier: Callable[[], None] | None = None) -> tuple[TopK, dict[str, Any]]:
    """The teacher's top-k log-probabilities at ``temperature`` on every position (or read from ``cache_dir``)."""
    info: dict[str, Any] = {"teacher": type(teacher).__name__, "cache": None, "top_k": k}
    if cache_dir is None:
        return _run_teacher(teacher, windows, mask, k, temperature, batch_size), info
    key = hashlib.sha256(f"lm-topk|{model_fingerprint(teacher)}|{windows_hash(windows, mask)}|{k}|"
                         f"{float(temperature)!r}".encode()).hexdigest()
    path = Path(cache_dir) / f"lm-teacher-{key[:24]}.safetensors"
    targets = cached(path, info, read=lambda p: _read(p, key, tuple(windows.shape), k),
                     compute=lambda: _run_teacher(teacher, windows, mask, k, temperature, batch_size),
                     write=lambda p, t: write_tensors(p, key, {"logp": t.logp, "idx": t.idx.to(torch.int32)},
                                                      kind="lm-topk"),  # ids fit int32: half the file
                     rank=rank, barrier=barrier)
    return targets, info


def _read(path: Path, key: str, shape: tuple[int, int], k: int) -> TopK | None:
    got = read_tensors(path, key)
    if got is None:
        return None
    logp, idx = got["logp"], got["idx"]
    if tuple(logp.shape) != (*shape, k) or logp.shape != idx.shape:
        return None
    return TopK(logp.float(), idx.to(torch.int64))
