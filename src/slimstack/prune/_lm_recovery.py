"""Recovery after LM pruning: distillation from the unpruned model (through ``ss.distill``) or next-token loss.

``recovery="distill"`` hands the pruned model to ``ss.distill`` as the student with the unpruned
model as teacher: forward KL on the teacher's cached top-k, on ``train=`` text when the caller
passes one (unlabelled text, e.g. teacher-generated with ``slimstack.llm.teacher_text``) or else
the calibration windows, of which only ``recovery_steps x recovery_batch`` evenly spread windows
are used (the teacher labels no window the run cannot reach); resumable through ``recovery_checkpoint_dir``. Which parameters train is
``recovery_params``: "all"; "blocks" (decoder layers and final norm: the tied embedding / LM head
stays the teacher's, which saves its weight gradient and keeps the head's quantization unchanged);
"near_cut" (only the kept layers next to a dropped one, plus the final norm: the backward pass
stops at the lowest of them); "norms" (RMSNorm/LayerNorm weights only). Pruned zeros stay zero:
masked weights train through a mask parametrization that is folded back in at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .._training import Trainer, TrainSettings

from ._lm_calib import calibration_windows

__all__ = ["recover_lm", "trainable_names"]


class _Mask(nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def trainable_names(inner: nn.Module, which: str, near: Sequence[int] | None = None) -> set[str]:
    """Names of the parameters of the transformers model ``inner`` that ``which`` trains."""
    from ..llm import decoder_layers

    names = [n for n, _ in inner.named_parameters()]
    if which == "all":
        return set(names)
    path, blocks = decoder_layers(inner)
    is_norm = {f"{n}.weight" for n, m in inner.named_modules() if "norm" in type(m).__name__.lower()
               or "norm" in n.rsplit(".", 1)[-1]}
    final = {n for n in is_norm if not n.startswith(path + ".")}
    if which == "norms":
        return {n for n in names if n in is_norm}
    if which == "blocks":
        return {n for n in names if n.startswith(path + ".")} | final
    layers = set(range(len(blocks))) if near is None else set(near)
    return {n for n in names if n.startswith(path + ".") and int(n[len(path) + 1:].split(".")[0]) in layers} | final


def recover_lm(student: Any, teacher: Any, windows: list[torch.Tensor], config: Any,
               masks: dict[str, torch.Tensor] | None = None, *, train: Any = None,
               near: Sequence[int] | None = None) -> dict[str, Any]:
    """Train ``student.model`` in place as ``config.recovery`` says; zeros in ``masks`` stay zero."""
    if config.recovery == "none":
        return {"recovery": "none"}
    inner = student.model
    keep = trainable_names(inner, config.recovery_params, near)
    frozen = {n: p.requires_grad for n, p in inner.named_parameters()}
    for n, p in inner.named_parameters():
        p.requires_grad_(n in keep)
    masks = {n: m for n, m in (masks or {}).items() if n in keep}
    for name, mask in masks.items():
        parametrize.register_parametrization(inner.get_submodule(name[: -len(".weight")]), "weight", _Mask(mask))
    trained = sum(p.numel() for n, p in inner.named_parameters() if p.requires_grad)
    try:
        if config.recovery == "distill":
            history = _distill(student, teacher, windows, config, train)
        else:
            history = _next_token(student, windows, config)
    finally:
        for name in masks:
            parametrize.remove_parametrizations(inner.get_submodule(name[: -len(".weight")]), "weight",
                                                leave_parametrized=True)
        for n, p in inner.named_parameters():
            p.requires_grad_(frozen.get(n, True))
        student.model.eval()
    return {"recovery": config.recovery, "params": config.recovery_params, "trained_params": int(trained),
            **history}


def _distill(student: Any, teacher: Any, windows: list[torch.Tensor], config: Any, train: Any) -> dict[str, Any]:
    from ..distill import DistillConfig, distill

    tokens = config.recovery_tokens or config.calibration_tokens
    # windows of ``tokens`` from train= (else the calibration windows, re-cut); the teacher labels only the
    # windows the run can reach: steps x batch, evenly spread
    windows = calibration_windows(student, train if train is not None else [w.numpy() for w in windows], 10**9,
                                  tokens)
    need = config.recovery_steps * config.recovery_batch
    if len(windows) > need:
        windows = [windows[int(i)] for i in np.linspace(0, len(windows) - 1, need).round()]
    text = [w.numpy() for w in windows]
    cfg = DistillConfig(temperature=1.0, top_k=config.recovery_top_k, lr=config.recovery_lr, epochs=1_000_000,
                        max_steps=config.recovery_steps, batch_size=config.recovery_batch, max_length=tokens,
                        warmup=0.1, schedule="cosine", grad_clip=1.0, weight_decay=0.0, seed=config.seed,
                        cache_dir=config.recovery_cache_dir, checkpoint_dir=config.recovery_checkpoint_dir,
                        progress=False)
    d = distill(teacher, student, cfg, train=text)
    with torch.no_grad():  # distill trained a copy: its weights come back into the pruned model
        student.model.load_state_dict(d.model.model.state_dict())
    losses = [h["loss"] for h in d.history if "loss" in h]
    k = max(1, len(losses) // 10)
    rec = d.record
    return {"steps": int(rec.get("steps", 0)), "lr": config.recovery_lr, "windows": rec.get("windows"),
            "window_tokens": rec.get("window_tokens"), "train_tokens": rec.get("tokens"),
            "text": "train=" if train is not None else "calibration windows",
            "loss_first": float(f"{sum(losses[:k]) / k:.6g}") if losses else None,
            "loss_last": float(f"{sum(losses[-k:]) / k:.6g}") if losses else None,
            "teacher_seconds": rec.get("teacher_seconds"), "train_seconds": rec.get("train_seconds"),
            "cache_hit": rec.get("cache_hit"), "resumed_from_epoch": rec.get("resumed_from_epoch")}


def _next_token(student: Any, windows: list[torch.Tensor], config: Any) -> dict[str, Any]:
    """Next-token loss, one window per step, in the shared training loop at a constant rate."""
    steps = config.recovery_steps
    settings = TrainSettings(epochs=math.ceil(steps / max(1, len(windows))), batch_size=1, lr=config.recovery_lr,
                             weight_decay=0.0, schedule="constant", max_steps=steps, order="stream",
                             seed=config.seed, distributed=False, name="recovery")
    losses: list[float] = []
    Trainer(_NextToken(student.model, windows), len(windows), settings,
            after_step=lambda values: losses.append(values["loss"])).fit()
    k = max(1, len(losses) // 10)
    ok = [v for v in losses if math.isfinite(v)]
    return {"steps": len(losses), "lr": config.recovery_lr, "loss_first": float(f"{sum(losses[:k]) / k:.6g}"),
            "loss_last": float(f"{sum(losses[-k:]) / k:.6g}"), "finite": len(ok) == len(losses)}


class _NextToken(nn.Module):
    """``forward(idx)``: the next-token loss on window ``idx[0]``."""

    def __init__(self, model: nn.Module, windows: list[torch.Tensor]):
        super().__init__()
        self.model, self.windows = model, windows

    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.windows[int(idx[0])][None]
        logits = self.model(input_ids=w, use_cache=False).logits.float()
        return {"loss": torch.nn.functional.cross_entropy(logits[0, :-1], w[0, 1:])}
