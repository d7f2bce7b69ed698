"""Short recovery after pruning: fine-tune on the task, or distil from the unpruned model.

Classifiers fine-tune with cross-entropy, or distil the teacher's temperature-softened logits
(Hinton et al. 2015) mixed with the labels. Sentence encoders distil the teacher's embeddings
(cosine loss), or fine-tune on scored pairs (cosine similarity regressed on the gold score).
Every variant is an objective trained by the shared loop (``slimstack._training.Trainer``);
masks, when given, are re-applied after every step so unstructured zeros stay zero.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._supervised import SupervisedObjective
from .._training import Trainer, TrainSettings
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
            batch = ENCODER_BATCH if method == "distill" else ENCODER_BATCH // 2
            steps = config.recovery_steps
            objective = (_EncoderDistill(pruned, teacher, data, steps * batch, config.seed) if method == "distill"
                         else _PairFinetune(pruned, data))
            # As many passes over the rows as the steps need; warm up over a tenth, then decay linearly.
            settings = TrainSettings(epochs=math.ceil(steps * batch / len(objective)), batch_size=batch, lr=lr,
                                     schedule="linear", warmup=0.1, max_steps=steps, order="stream",
                                     seed=config.seed, distributed=False, name="recovery")
            losses = _fit(objective, settings, pruned, masks)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return {"method": method, "steps": config.recovery_steps, "lr": lr, "loss_first": losses[0],
                "loss_last": float(np.mean(losses[-10:]))}
    lr = config.recovery_lr or 3e-3  # the rate ss.zoo.train uses for these small networks
    n_epochs = epochs or config.recovery_epochs
    soft = _teacher_outputs(teacher, data) if method == "distill" else None
    objective = SupervisedObjective(pruned, data, what=f"recovery of a {type(pruned).__name__}", soft=soft,
                                    temperature=TEMPERATURE, alpha=ALPHA)
    settings = TrainSettings(epochs=n_epochs, batch_size=BATCH, lr=lr, schedule="cosine", order="stream",
                             seed=config.seed, distributed=False, name="recovery")
    history = Trainer(objective, len(objective), settings, after_step=lambda values: apply_masks(pruned, masks)).fit()
    pruned.eval()
    return {"method": method, "epochs": n_epochs, "lr": lr, "loss_first": history[0]["loss"],
            "loss_last": history[-1]["loss"]}


def _fit(objective: nn.Module, settings: TrainSettings, model: nn.Module,
         masks: dict[str, torch.Tensor] | None) -> list[float]:
    """Train ``objective``; the loss of every step (pruned weights are zeroed again after each)."""
    losses: list[float] = []

    def after_step(values: dict[str, float]) -> None:
        apply_masks(model, masks)
        losses.append(values["loss"])

    Trainer(objective, len(objective), settings, after_step=after_step).fit()
    return losses


@torch.no_grad()
def _teacher_outputs(teacher: nn.Module, data: Any) -> torch.Tensor | None:
    if getattr(data, "X", None) is None:
        return None  # SupervisedObjective says what data recovery needs
    was = teacher.training  # the teacher is the caller's model: leave its mode as it was
    teacher.eval()
    try:
        X = torch.as_tensor(np.ascontiguousarray(data.X, dtype=np.float32))
        return torch.cat([teacher(X[i : i + 512]) for i in range(0, len(X), 512)])
    finally:
        teacher.train(was)


class _Encoder(nn.Module):
    """Recovery objectives of a sentence encoder: it stays in eval mode (no dropout over a few hundred steps)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def train(self, mode: bool = True) -> _Encoder:
        super().train(mode)
        self.encoder.eval()
        return self

    def embed(self, texts: list[str]) -> torch.Tensor:
        return self.encoder(**self.encoder.tokenize(texts))


class _EncoderDistill(_Encoder):
    """Cosine loss to the unpruned encoder's embeddings of distinct training sentences (at most ``limit``)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, data: Any, limit: int, seed: int):
        super().__init__(student)
        try:
            sents = list(dict.fromkeys(data.sentences()))
        except (DataError, AttributeError) as exc:
            raise DataError(f"distilling a sentence encoder needs sentences in data, got {data!r}") from exc
        if not sents:
            raise DataError(f"distilling a sentence encoder needs sentences in data, got none from {data!r}")
        order = np.random.default_rng(seed).permutation(len(sents))[:limit]  # the teacher encodes no more than used
        self.sents = [sents[i] for i in order]
        self.target = torch.as_tensor(np.asarray(teacher.encode(self.sents, batch_size=128)))

    def __len__(self) -> int:
        return len(self.sents)

    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.embed([self.sents[i] for i in idx.tolist()])
        return {"loss": (1 - F.cosine_similarity(emb, self.target[idx], dim=-1)).mean()}


class _PairFinetune(_Encoder):
    """Cosine similarity of scored sentence pairs regressed on the gold score (scaled to [0, 1])."""

    def __init__(self, encoder: nn.Module, data: Any):
        super().__init__(encoder)
        if getattr(data, "pairs", None) is None or getattr(data, "scores", None) is None:
            raise DataError(f"recovery='finetune' of a sentence encoder needs scored pairs (e.g. "
                            f"ss.datasets.load('stsb')), got {data!r}; or use recovery='distill' with any sentences")
        scores = np.asarray(data.scores, dtype=np.float32)
        self.pairs = data.pairs
        self.scores = torch.as_tensor(scores / (float(scores.max()) or 1.0))

    def __len__(self) -> int:
        return len(self.pairs)

    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = idx.tolist()
        a = self.embed([self.pairs[i][0] for i in rows])
        b = self.embed([self.pairs[i][1] for i in rows])
        return {"loss": F.mse_loss(F.cosine_similarity(a, b, dim=-1), self.scores[idx])}
