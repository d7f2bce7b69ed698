"""A short recovery run after LM pruning: next-token loss or distillation from the unpruned model.

One window per step, in the shared training loop (``slimstack._training.Trainer``) at a constant
rate; zeros of the pruned weights are restored after every step. ``ss.distill`` with a causal-LM
student is the longer alternative (top-k targets cached on disk, checkpoints, validation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._training import Trainer, TrainSettings
from ._recovery import apply_masks

__all__ = ["recover_lm"]


def recover_lm(student: Any, teacher: Any, windows: list[torch.Tensor], config: Any,
               masks: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Train ``student.model`` in place for ``config.recovery_steps`` steps; zeros in ``masks`` stay zero."""
    if config.recovery == "none":
        return {"recovery": "none"}
    objective = _WindowLoss(student.model, teacher.model, windows, config.recovery)
    steps = config.recovery_steps
    settings = TrainSettings(epochs=math.ceil(steps / max(1, len(windows))), batch_size=1, lr=config.recovery_lr,
                             schedule="constant", max_steps=steps, order="stream", seed=config.seed,
                             distributed=False, name="recovery")
    losses: list[float] = []

    def after_step(values: dict[str, float]) -> None:
        apply_masks(student.model, masks)
        losses.append(values["loss"])

    try:
        Trainer(objective, len(windows), settings, after_step=after_step).fit()
    finally:
        student.model.eval()
    k = max(1, len(losses) // 10)
    return {"recovery": config.recovery, "steps": len(losses), "loss_first": float(f"{sum(losses[:k]) / k:.6g}"),
            "loss_last": float(f"{sum(losses[-k:]) / k:.6g}")}


class _WindowLoss(nn.Module):
    """``forward(idx)``: the loss on window ``idx[0]``: KL to the unpruned model ("distill") or next-token."""

    def __init__(self, model: nn.Module, teacher: nn.Module, windows: list[torch.Tensor], method: str):
        super().__init__()
        self.model, self.windows, self.method = model, windows, method
        object.__setattr__(self, "_teacher", teacher)  # not a submodule: never trained

    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.windows[int(idx[0])][None]
        logits = self.model(input_ids=w, use_cache=False).logits.float()
        if self.method == "distill":
            with torch.no_grad():
                ref = torch.log_softmax(self._teacher(input_ids=w, use_cache=False).logits.float(), -1)
            loss = F.kl_div(torch.log_softmax(logits, -1), ref, log_target=True, reduction="batchmean") / w.shape[1]
        else:
            loss = F.cross_entropy(logits[0, :-1], w[0, 1:])
        return {"loss": loss}
