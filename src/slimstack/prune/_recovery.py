"""Short recovery after pruning: fine-tune on the task, or distil from the unpruned model.

Classifiers fine-tune with cross-entropy, or distil the teacher's temperature-softened logits
(Hinton et al. 2015) mixed with the labels. Sentence encoders distil the teacher's embeddings
(cosine loss), or fine-tune on scored pairs (cosine similarity regressed on the gold score).
Masks, when given, are re-applied after every step so unstructured zeros stay zero.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._utils import seed_everything
from ..errors import ConfigError, DataError
from ._common import is_encoder

__all__ = ["recover", "apply_masks"]

TEMPERATURE = 4.0  # softens the teacher's logits so the ranking of wrong classes carries information
ALPHA = 0.5  # weight of the distillation term against the labels
BATCH = 64
ENCODER_BATCH = 32


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor] | None) -> None:
    if not masks:
        return
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask)


def recover(pruned: nn.Module, teacher: nn.Module, config: Any, data: Any, *,
            masks: dict[str, torch.Tensor] | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Run the recovery ``config.recovery`` names on ``pruned`` in place; return its history."""
    method = config.recovery
    if method == "none":
        return {"method": "none"}
    if data is None:
        raise ConfigError(f"recovery={method!r} trains on data, but data=None; pass data=ds (training data) "
                          "or set recovery='none'")
    seed_everything(config.seed)
    if is_encoder(pruned):
        lr = config.recovery_lr or 1e-4
        frozen = [p for n, p in pruned.named_parameters() if ".embeddings." in f".{n}" and p.requires_grad]
        for p in frozen:  # no gradient work for the 30k-row embedding table
            p.requires_grad_(False)
        try:
            if method == "distill":
                losses = _distill_encoder(pruned, teacher, data, config.recovery_steps, lr, config.seed, masks)
            else:
                losses = _finetune_encoder(pruned, data, config.recovery_steps, lr, config.seed, masks)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return {"method": method, "steps": config.recovery_steps, "lr": lr, "loss_first": losses[0],
                "loss_last": float(np.mean(losses[-10:]))}
    lr = config.recovery_lr or 3e-3  # the rate ss.zoo.train uses for these small networks
    n_epochs = epochs or config.recovery_epochs
    losses = _train_classifier(pruned, teacher if method == "distill" else None, data, n_epochs, lr, config.seed,
                               masks)
    return {"method": method, "epochs": n_epochs, "lr": lr, "loss_first": losses[0], "loss_last": losses[-1]}


def _train_classifier(model: nn.Module, teacher: nn.Module | None, data: Any, epochs: int, lr: float, seed: int,
                      masks: dict[str, torch.Tensor] | None) -> list[float]:
    if getattr(data, "X", None) is None or data.task not in ("classification", "regression"):
        raise DataError(f"recovery of a {type(model).__name__} needs labelled array data (classification or "
                        f"regression), got {data!r}")
    classify = data.task == "classification"
    X = torch.as_tensor(np.ascontiguousarray(data.X))
    y = torch.as_tensor(data.y, dtype=torch.long if classify else torch.float32)
    soft = None
    if teacher is not None:
        was = teacher.training  # the teacher is the caller's model: leave its mode as it was
        teacher.eval()
        with torch.no_grad():
            soft = torch.cat([teacher(X[i : i + 512]) for i in range(0, len(X), 512)])
        teacher.train(was)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(X) / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(X), generator=gen)
        total = 0.0
        for start in range(0, len(X), BATCH):
            idx = order[start : start + BATCH]
            out = model(X[idx])
            loss = F.cross_entropy(out, y[idx]) if classify else F.mse_loss(out.squeeze(-1), y[idx])
            if soft is not None and classify:
                kd = F.kl_div(F.log_softmax(out / TEMPERATURE, -1), F.softmax(soft[idx] / TEMPERATURE, -1),
                              reduction="batchmean") * TEMPERATURE**2
                loss = ALPHA * kd + (1 - ALPHA) * loss
            elif soft is not None:
                loss = ALPHA * F.mse_loss(out, soft[idx]) + (1 - ALPHA) * loss
            total += _step(opt, sched, loss, model, masks) * len(idx)
        history.append(total / len(X))
    model.eval()
    return history


def _sentences(data: Any, n: int, seed: int) -> list[str]:
    try:
        sents = list(dict.fromkeys(data.sentences()))
    except (DataError, AttributeError) as exc:
        raise DataError(f"distilling a sentence encoder needs sentences in data, got {data!r}") from exc
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sents))
    reps = math.ceil(n / max(1, len(sents)))
    return [sents[i] for i in np.tile(order, reps)[:n]]


def _schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm + 1))))


def _trainable(encoder: nn.Module) -> list[nn.Parameter]:
    """The transformer layers; embeddings stay frozen (pruning did not touch them, and a few hundred
    steps on a small corpus would only overfit the 30k-row table)."""
    return [p for n, p in encoder.named_parameters() if ".embeddings." not in f".{n}" and p.requires_grad]


def _distill_encoder(student: nn.Module, teacher: nn.Module, data: Any, steps: int, lr: float, seed: int,
                     masks: dict[str, torch.Tensor] | None) -> list[float]:
    sents = _sentences(data, steps * ENCODER_BATCH, seed)
    unique = list(dict.fromkeys(sents))
    target = dict(zip(unique, teacher.encode(unique, batch_size=128), strict=True))
    opt = torch.optim.AdamW(_trainable(student), lr=lr, weight_decay=0.0)
    sched = _schedule(opt, steps)
    student.eval()  # no dropout: a few hundred steps fit the teacher better without it
    losses = []
    for step in range(steps):
        batch = sents[step * ENCODER_BATCH : (step + 1) * ENCODER_BATCH]
        emb = student(**student.tokenize(batch))
        tgt = torch.as_tensor(np.stack([target[s] for s in batch]))
        loss = (1 - F.cosine_similarity(emb, tgt, dim=-1)).mean()
        losses.append(_step(opt, sched, loss, student, masks))
    return losses


def _finetune_encoder(model: nn.Module, data: Any, steps: int, lr: float, seed: int,
                      masks: dict[str, torch.Tensor] | None) -> list[float]:
    if getattr(data, "pairs", None) is None or getattr(data, "scores", None) is None:
        raise DataError(f"recovery='finetune' of a sentence encoder needs scored pairs (e.g. ss.datasets.load('stsb')), "
                        f"got {data!r}; or use recovery='distill' with any sentences")
    rng = np.random.default_rng(seed)
    scores = np.asarray(data.scores, dtype=np.float32)
    scale = float(scores.max()) or 1.0
    opt = torch.optim.AdamW(_trainable(model), lr=lr, weight_decay=0.0)
    sched = _schedule(opt, steps)
    model.eval()
    losses = []
    half = ENCODER_BATCH // 2
    for _ in range(steps):
        idx = rng.choice(len(data.pairs), size=min(half, len(data.pairs)), replace=False)
        a = model(**model.tokenize([data.pairs[i][0] for i in idx]))
        b = model(**model.tokenize([data.pairs[i][1] for i in idx]))
        loss = F.mse_loss(F.cosine_similarity(a, b, dim=-1), torch.as_tensor(scores[idx] / scale))
        losses.append(_step(opt, sched, loss, model, masks))
    return losses


def _step(opt: torch.optim.Optimizer, sched: Any, loss: torch.Tensor, model: nn.Module,
          masks: dict[str, torch.Tensor] | None) -> float:
    """One optimizer and schedule step; pruned weights are zeroed again. Returns the loss value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    apply_masks(model, masks)
    return loss.item()

