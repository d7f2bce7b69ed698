"""``ss.distill`` for causal language models: logit distillation on unlabelled text.

The student learns the teacher's next-token distribution: forward KL(teacher_T || student_T) at
temperature T, scaled by T^2 (Hinton), averaged over every token position of every training
window. The teacher's distribution is kept as its top-k tokens (cached on disk once, see
``_lm_cache``) plus a *tail bucket*: all other tokens pooled into one outcome whose teacher
probability is ``1 - sum(top-k)`` and whose student probability is the student's mass outside the
teacher's top-k. The loss is the exact KL between these two (k+1)-outcome distributions, a lower
bound of the full KL that equals it when k covers the vocabulary (``top_k >= vocab``).

:class:`CausalLMDistillHandler` is chosen by the distill registry when the student is a causal LM.
Training runs in the shared loop (``slimstack._training.Trainer``): checkpoints, resume, early
stopping on the validation KL and ``torchrun`` DDP work as for every other student.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from .._arch import is_causal_lm
from .._config import Request
from .._training import world
from .._utils import seed_everything, threads
from ..errors import ConfigError, DataError, ModelError
from ._config import DistillConfig
from ._lm_cache import TopK, model_fingerprint, teacher_topk, windows_hash
from ._registry import REGISTRY, DistillHandler, barrier

__all__ = ["CausalLMDistillHandler", "topk_kl", "lm_windows", "LM_LR", "LM_WINDOW"]

LM_LR = 5e-5  # lr="auto" for causal-LM students: a range test would cost as much as the run
LM_WINDOW = 256  # tokens per training window when neither max_length nor the dataset's window says


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


@REGISTRY.register(DistillConfig)
class CausalLMDistillHandler(DistillHandler):
    """Next-token logit distillation between causal LMs on unlabelled text (top-k KL with a tail bucket)."""

    def applies_to(self, student: Any) -> str | None:
        if not is_causal_lm(student):
            return "the causal-LM handler takes slimstack CausalLM students"
        if not isinstance(student, nn.Module):
            return (f"a {type(student).__name__} runs a quantized file and cannot be trained; distill into the float "
                    "CausalLM and quantize the student afterwards")
        return None

    def run(self, student: Any, config: DistillConfig, request: Request) -> Any:
        teacher = request.options.get("teacher")
        _check_pair(teacher, student)
        if config.features or config.augment != "none":
            raise ConfigError("causal-LM distillation matches next-token logits only; drop DistillConfig.features "
                              "and set augment='none'")
        ids, mask = lm_windows(request.train, student, config.max_length, "train")
        val_w = lm_windows(request.val, student, config.max_length, "val") if request.val is not None else None
        student = copy.deepcopy(student)  # the caller's model is never trained
        k = student.vocab_size if config.top_k is None else min(int(config.top_k), student.vocab_size)
        rank, world_size = world()
        wait = barrier(world_size)
        t0 = time.perf_counter()
        with threads(config.threads):
            seed_everything(config.seed)
            targets, info = teacher_topk(teacher, ids, mask, k=k, temperature=config.temperature,
                                         cache_dir=config.cache_dir, rank=rank, barrier=wait)
            val_targets = None
            if val_w is not None:
                val_targets, _ = teacher_topk(teacher, *val_w, k=k, temperature=config.temperature,
                                              cache_dir=config.cache_dir, rank=rank, barrier=wait)
            summary: dict[str, Any] = {"teacher_output": "lm-topk", **info, "tail_bucket": k < student.vocab_size,
                                       "temperature": config.temperature, "windows": int(len(ids)),
                                       "window_tokens": int(ids.shape[1]), "tokens": int(mask.sum()),
                                       "teacher_seconds": round(time.perf_counter() - t0, 3)}
            objective = LMObjective(student, ids, mask, targets, config.temperature)
            evaluate = None
            if val_targets is not None:
                evaluate = lambda: objective.score(*val_w, val_targets, config.batch_size)  # noqa: E731
            identity = (windows_hash(ids, mask), world_size, model_fingerprint(student), model_fingerprint(teacher))
            history, trained = self.fit(objective, len(ids), config, request,
                                        lr=LM_LR if config.lr == "auto" else config.lr, identity=identity,
                                        evaluate=evaluate)
        summary.update(loss="kd-topk", **trained, rows=int(len(ids)))
        return self.result(student, history, summary, t0)


def _check_pair(teacher: Any, student: Any) -> None:
    if not (is_causal_lm(teacher) and isinstance(teacher, nn.Module)):
        raise ModelError(f"the student is a causal LM, so the teacher must be one too (a slimstack CausalLM); got "
                         f"{type(teacher).__name__}")
    if teacher.vocab_size != student.vocab_size:
        raise ModelError(f"the teacher's vocabulary has {teacher.vocab_size} tokens but the student's has "
                         f"{student.vocab_size}; logit distillation compares them token by token, so use a student "
                         "with the teacher's tokenizer and vocabulary (ss.zoo.shrink keeps them)")
