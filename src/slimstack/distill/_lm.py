"""``ss.distill`` for causal language models: logit distillation on unlabelled text.

The student learns the teacher's next-token distribution: forward KL(teacher_T || student_T) at
temperature T, scaled by T^2 (Hinton), averaged over every token position of every training
window. The teacher's distribution is kept as its top-k tokens (cached on disk once, see
``_lm_cache``) plus a *tail bucket*: all other tokens pooled into one outcome whose teacher
probability is ``1 - sum(top-k)`` and whose student probability is the student's mass outside the
teacher's top-k. The loss is the exact KL between these two (k+1)-outcome distributions, a lower
bound of the full KL that equals it when k covers the vocabulary (``top_k >= vocab``).

Training reuses the generic :class:`~slimstack.distill._trainer.Trainer`: checkpoints, resume,
early stopping on the validation KL and ``torchrun`` DDP work as for every other student.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .._utils import seed_everything, threads
from ..errors import DataError, ModelError
from ._config import DistillConfig
from ._lm_cache import TopK, model_fingerprint, teacher_topk, windows_hash
from ._trainer import Trainer, TrainSettings, fingerprint, world

__all__ = ["distill_lm", "is_causal_lm", "topk_kl", "lm_windows", "LM_LR", "LM_WINDOW"]

LM_LR = 5e-5  # lr="auto" for causal-LM students: a range test would cost as much as the run
LM_WINDOW = 256  # tokens per training window when neither max_length nor the dataset's window says


def is_causal_lm(model: Any) -> bool:
    from ..llm import CausalLM

    return isinstance(model, CausalLM)


def topk_kl(student_logits: torch.Tensor, t_logp: torch.Tensor, t_idx: torch.Tensor, mask: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """Mean over masked positions of T^2 * KL(teacher || student) on the top-k support plus a tail bucket.

    ``student_logits`` (b, L, V); ``t_logp``/``t_idx`` (b, L, k): the teacher's log-probabilities
    at ``temperature`` on its top-k tokens; ``mask`` (b, L) 1 where a position counts.
    """
    s = student_logits.float() / temperature
    log_z = torch.logsumexp(s, dim=-1, keepdim=True)
    s_logp = s.gather(-1, t_idx) - log_z  # student log-prob of the teacher's top-k tokens
    p = t_logp.exp()
    kl = (p * (t_logp - s_logp)).sum(-1)
    if t_idx.shape[-1] < s.shape[-1]:
        # The tail: every token outside the teacher's top-k, pooled. The student's tail mass is a
        # logsumexp over its logits with the top-k masked out, exact and stable however small.
        s_tail = s.scatter(-1, t_idx, float("-inf"))
        s_tail_logp = torch.logsumexp(s_tail, dim=-1) - log_z[..., 0]
        p_tail = (1.0 - p.sum(-1)).clamp(min=0.0)
        t_tail_logp = torch.log(p_tail.clamp(min=1e-30))
        kl = kl + torch.where(p_tail > 1e-12, p_tail * (t_tail_logp - s_tail_logp), torch.zeros_like(kl))
    m = mask.float()
    return (kl * m).sum() / m.sum().clamp(min=1.0) * temperature**2


def lm_windows(data: Any, lm: Any, window: int | None, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token windows of ``data`` for ``lm``: (n, L) ids padded with 0 and their (n, L) attention mask.

    ``data``: a task-"lm" Dataset, one text, a list of texts, or a list of token-id sequences.
    """
    from ..datasets import Dataset
    from ..datasets import text_dataset, token_windows

    if data is None:
        raise DataError(f"ss.distill needs {name} text for a causal LM; pass ss.datasets.load('notes.txt') or a list "
                        "of texts")
    if isinstance(data, str):
        data = [data]
    if isinstance(data, Dataset):
        if data.task != "lm":
            raise DataError(f"the {name} data {data.name!r} has task {data.task!r}; a causal-LM student trains on "
                            "text: pass a task 'lm' dataset (ss.datasets.load('pytorch_readme') or a .txt/.jsonl file)")
        size = window or int(data.meta.get("window") or LM_WINDOW)
        wins = token_windows(data, lm, window=size)
    elif isinstance(data, list | tuple) and data and all(isinstance(t, str) for t in data):
        if not any(t.strip() for t in data):
            raise DataError(f"the {name} text is empty (only whitespace); distillation needs some text to train on")
        size = window or LM_WINDOW
        wins = token_windows(text_dataset(list(data), name=name, window=size), lm, window=size)
    elif isinstance(data, list | tuple) and data and all(isinstance(t, np.ndarray | list) for t in data):
        wins = [np.asarray(w, dtype=np.int64) for w in data]
        size = window or max(len(w) for w in wins)
        wins = [w[i : i + size] for w in wins for i in range(0, len(w), size) if len(w[i : i + size]) >= 2]
    else:
        if isinstance(data, list | tuple) and not data:
            raise DataError(f"the {name} text is empty (an empty list); pass at least one text to distill on")
        raise DataError(f"ss.distill cannot use {name}={type(data).__name__} for a causal LM; pass a task 'lm' "
                        "Dataset, a text, a list of texts or a list of token-id windows")
    if not wins:
        raise DataError(f"the {name} text gives no window of 2 or more tokens; pass more text")
    longest = max(len(w) for w in wins)
    if longest > lm.context_length:
        raise DataError(f"{name} windows are {longest} tokens, longer than the student's context of "
                        f"{lm.context_length} tokens; set DistillConfig(max_length=<= {lm.context_length})")
    ids = torch.zeros((len(wins), longest), dtype=torch.long)
    mask = torch.zeros((len(wins), longest), dtype=torch.long)
    for i, w in enumerate(wins):
        ids[i, : len(w)] = torch.as_tensor(w)
        mask[i, : len(w)] = 1
    return ids, mask


class LMObjective(nn.Module):
    """``forward(idx) -> {"loss", "kd"}`` on training windows ``idx`` (the trainer's contract)."""

    def __init__(self, student: nn.Module, ids: torch.Tensor, mask: torch.Tensor, targets: TopK, temperature: float):
        super().__init__()
        self.student = student
        self.ids, self.mask, self.targets, self.temperature = ids, mask, targets, float(temperature)

    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss_on(self.ids[idx], self.mask[idx], self.targets.logp[idx], self.targets.idx[idx])

    def loss_on(self, ids: torch.Tensor, mask: torch.Tensor, logp: torch.Tensor, idx: torch.Tensor):
        logits = self.student(ids, attention_mask=mask)
        kd = topk_kl(logits, logp, idx, mask, self.temperature)
        return {"loss": kd, "kd": kd}

    @torch.no_grad()
    def score(self, ids: torch.Tensor, mask: torch.Tensor, targets: TopK, batch_size: int) -> float:
        """Negative token-weighted top-k KL on held-out windows (higher is better)."""
        was = self.student.training
        self.student.eval()
        total, count = 0.0, 0.0
        try:
            for s in range(0, len(ids), batch_size):
                sl = slice(s, s + batch_size)
                n = float(mask[sl][:, 1:].sum())
                total += float(self.loss_on(ids[sl], mask[sl], targets.logp[sl], targets.idx[sl])["kd"]) * n
                count += n
        finally:
            self.student.train(was)
        return -total / max(count, 1.0)


def _check_pair(teacher: Any, student: Any) -> None:
    if not is_causal_lm(teacher):
        raise ModelError(f"the student is a causal LM, so the teacher must be one too (a slimstack CausalLM); got "
                         f"{type(teacher).__name__}")
    if not is_causal_lm(student):
        raise ModelError(f"the teacher is a causal LM, so the student must be one too, e.g. "
                         f"ss.zoo.shrink(teacher, layers=...); got {type(student).__name__}")
    if teacher.vocab_size != student.vocab_size:
        raise ModelError(f"the teacher's vocabulary has {teacher.vocab_size} tokens but the student's has "
                         f"{student.vocab_size}; logit distillation compares them token by token, so use a student "
                         "with the teacher's tokenizer and vocabulary (ss.zoo.shrink keeps them)")


def distill_lm(teacher: Any, student: Any, config: DistillConfig, *, train: Any, val: Any = None,
               on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """``ss.distill`` when teacher and student are causal LMs (called by ``distill._api.distill``)."""
    from ._api import _RUN_ONLY, DistillResult, _barrier

    _check_pair(teacher, student)
    if config.features or config.augment != "none":
        from ..errors import ConfigError

        raise ConfigError("causal-LM distillation matches next-token logits only; drop DistillConfig.features and "
                          "set augment='none'")
    ids, mask = lm_windows(train, student, config.max_length, "train")
    val_w = lm_windows(val, student, config.max_length, "val") if val is not None else None
    student = copy.deepcopy(student)  # the caller's model is never trained
    k = student.vocab_size if config.top_k is None else min(int(config.top_k), student.vocab_size)
    rank, world_size = world()
    barrier = _barrier() if world_size > 1 else None
    t0 = time.perf_counter()
    with threads(config.threads):
        seed_everything(config.seed)
        targets, info = teacher_topk(teacher, ids, mask, k=k, temperature=config.temperature,
                                     cache_dir=config.cache_dir, rank=rank, barrier=barrier)
        val_targets = None
        if val_w is not None:
            val_targets, _ = teacher_topk(teacher, *val_w, k=k, temperature=config.temperature,
                                          cache_dir=config.cache_dir, rank=rank, barrier=barrier)
        record: dict[str, Any] = {"teacher_output": "lm-topk", **info, "tail_bucket": k < student.vocab_size,
                                  "temperature": config.temperature, "windows": int(len(ids)),
                                  "window_tokens": int(ids.shape[1]), "tokens": int(mask.sum()),
                                  "teacher_seconds": round(time.perf_counter() - t0, 3)}
        objective = LMObjective(student, ids, mask, targets, config.temperature)
        evaluate = None
        if val_targets is not None:
            evaluate = lambda: objective.score(*val_w, val_targets, config.batch_size)  # noqa: E731
        lr = LM_LR if config.lr == "auto" else config.lr
        settings = TrainSettings.from_config(
            config, lr=lr,
            fingerprint=fingerprint({k_: v for k_, v in config.to_dict()["data"].items() if k_ not in _RUN_ONLY},
                                    windows_hash(ids, mask), world_size, model_fingerprint(student),
                                    model_fingerprint(teacher)))
        seed_everything(config.seed)
        trainer = Trainer(objective, len(ids), settings, evaluate=evaluate, on_epoch_end=on_epoch_end)
        history = trainer.fit()
    student.eval()
    record.update(loss="kd-topk", **trainer.record, rows=int(len(ids)), total_seconds=round(time.perf_counter() - t0, 3))
    return DistillResult(model=student, history=history, record=record)
