"""A short recovery run after LM pruning: next-token loss or distillation from the unpruned model.

Kept small on purpose: when ``slimstack.distill`` takes causal LMs, ``recover_lm`` should hand
``recovery="distill"`` to it (teacher = the unpruned LM, student = the pruned one, the calibration
windows as training text, masks kept by a post-step hook) instead of this loop.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["recover_lm"]


def recover_lm(student: Any, teacher: Any, windows: list[torch.Tensor], config: Any,
               masks: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Train ``student.model`` in place for ``config.recovery_steps`` steps; zeros in ``masks`` stay zero."""
    if config.recovery == "none":
        return {"recovery": "none"}
    gen = torch.Generator().manual_seed(config.seed)
    params = {n: p for n, p in student.model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params.values(), lr=config.recovery_lr, weight_decay=0.0)
    masks = masks or {}
    losses = []
    student.model.train()
    try:
        for _ in range(config.recovery_steps):
            w = windows[int(torch.randint(len(windows), (1,), generator=gen))][None]
            logits = student.model(input_ids=w, use_cache=False).logits.float()
            if config.recovery == "distill":
                with torch.no_grad():
                    ref = torch.log_softmax(teacher.model(input_ids=w, use_cache=False).logits.float(), -1)
                loss = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), ref, log_target=True,
                                                  reduction="batchmean") / w.shape[1]
            else:
                loss = torch.nn.functional.cross_entropy(logits[0, :-1], w[0, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for name, mask in masks.items():
                    params[name].mul_(mask)
            losses.append(float(loss.detach()))
    finally:
        student.model.eval()
    k = max(1, len(losses) // 10)
    return {"recovery": config.recovery, "steps": len(losses), "loss_first": float(f"{sum(losses[:k]) / k:.6g}"),
            "loss_last": float(f"{sum(losses[-k:]) / k:.6g}")}
