"""Distillation into the rounded grid: fit block scales (codes fixed) and norm weights to the float model.

After GPTQ has chosen every weight's integer code, the codes stay; what is trained is each block's
scale ``d`` (one per 32 inputs, the float16 the file stores) and the RMSNorm weights (float32 in the
file), by next-token logit distillation from the float model on the calibration windows: the KL
divergence KL(float || rounded) over every position after the first ``SKIP`` of each window, with the
teacher's distribution kept as its top ``TOP_K`` tokens plus a tail bucket (``slimstack.distill.topk_kl``).
This is EfficientQAT's end-to-end quantization-parameter training (Chen et al., 2024) on llama.cpp's
block formats: the file keeps its size, tensor types and kernels, so decode speed is unchanged.

A scale is trained as ``d * (1 + s)`` with ``s`` starting at 0 (Adam works on a relative step, the same
for blocks of any magnitude). Training runs on all but ``HELD_OUT`` calibration windows; the held-out
ones are scored before and after, and the tuned values are kept only where they lower that KL.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ._grids import FORMATS
from ._writer import QTensor

__all__ = ["TUNABLE", "tune_scales"]

TUNABLE = ("Q4_0", "Q5_0", "Q8_0", "IQ4_NL")  # symmetric block formats: weight = level(code) * d
TOP_K = 128
SKIP = 8  # first positions of a window: next-token distributions with almost no context are noise
HELD_OUT = 8
LR_SCALE, LR_NORM = 1e-3, 2e-4


def _levels(qt: QTensor) -> torch.Tensor:
    """The codes' values at scale 1, shaped (rows, blocks, 32)."""
    rows = qt.q.shape[0]
    return FORMATS[qt.grid].value(qt.q.reshape(rows, qt.d.shape[1], -1).float(), torch.ones(()), None).float()


def _targets(model: nn.Module, ids: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    logp, idx = [], []
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            lp = torch.log_softmax(model(input_ids=ids[s:s + batch]).logits.float(), -1)
            top, i = lp.topk(TOP_K, dim=-1)
            logp.append(top)
            idx.append(i)
    return torch.cat(logp), torch.cat(idx)


def tune_scales(model: nn.Module, chosen: dict[str, QTensor], windows: list[torch.Tensor], *, steps: int,
                batch: int = 4, seed: int = 0) -> tuple[nn.Module, dict[str, QTensor], dict[str, Any]]:
    """(model with tuned norm weights, QTensors with tuned scales, summary); the inputs are left unchanged.

    Trains whatever the caller's grad mode (``torch.no_grad()`` or ``inference_mode()`` around the call).
    """
    with torch.inference_mode(False), torch.enable_grad():
        return _tune(model, chosen, windows, steps, batch, seed)


def _tune(model: nn.Module, chosen: dict[str, QTensor], windows: list[torch.Tensor], steps: int, batch: int,
          seed: int) -> tuple[nn.Module, dict[str, QTensor], dict[str, Any]]:
    from ....distill import topk_kl

    t0 = time.perf_counter()
    student = copy.deepcopy(model).eval()
    for p in student.parameters():
        p.requires_grad_(False)
    names = [n for n, qt in chosen.items() if qt.grid in TUNABLE]
    levels = {n: _levels(chosen[n]) for n in names}
    rel = {n: torch.zeros_like(chosen[n].d, requires_grad=True) for n in names}
    norms = [p for n, p in student.named_parameters() if p.ndim == 1 and "norm" in n]
    for p in norms:
        p.requires_grad_(True)
    ids = torch.stack([w.reshape(-1) for w in windows])
    train, held = (ids[HELD_OUT:], ids[:HELD_OUT]) if len(ids) > 2 * HELD_OUT else (ids, ids)
    t_train, t_held = _targets(model, train, batch), _targets(model, held, batch)
    mask = torch.ones(ids.shape[1], dtype=torch.long)
    mask[:SKIP] = 0

    def weights() -> dict[str, torch.Tensor]:
        out = {}
        for n in names:
            d = chosen[n].d * (1 + rel[n])
            out[n] = (levels[n] * d[..., None]).reshape(chosen[n].q.shape)
        return out

    def loss_on(x: torch.Tensor, logp: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        logits = functional_call(student, weights(), args=(), kwargs={"input_ids": x}).logits
        return topk_kl(logits, logp, idx, mask.expand(len(x), -1), 1.0)

    def held_kl() -> float:
        with torch.no_grad():
            return float(sum(float(loss_on(held[s:s + batch], t_held[0][s:s + batch], t_held[1][s:s + batch]))
                             * len(held[s:s + batch]) for s in range(0, len(held), batch)) / len(held))

    before = held_kl()
    opt = torch.optim.Adam([{"params": list(rel.values()), "lr": LR_SCALE}, {"params": norms, "lr": LR_NORM}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        pick = torch.randint(len(train), (batch,), generator=gen)
        loss = loss_on(train[pick], t_train[0][pick], t_train[1][pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    after = held_kl()
    summary = {"steps": steps, "scales": sum(chosen[n].d.numel() for n in names), "tensors": len(names),
               "norm_weights": sum(p.numel() for p in norms), "held_out_windows": len(held),
               "held_out_kl_before": round(before, 5), "held_out_kl_after": round(after, 5),
               "train_loss_first": round(losses[0], 5) if losses else None,
               "train_loss_last": round(sum(losses[-8:]) / len(losses[-8:]), 5) if losses else None,
               "seconds": round(time.perf_counter() - t0, 1)}
    if not after < before:
        summary["kept"] = False
        return model, chosen, summary
    summary["kept"] = True
    for p in norms:
        p.requires_grad_(False)
    tuned = dict(chosen)
    with torch.no_grad():
        for n in names:
            qt = chosen[n]
            tuned[n] = QTensor(qt.grid, qt.q, (qt.d * (1 + rel[n])).half().float(), qt.m, qt.extra)
    return student, tuned, summary
