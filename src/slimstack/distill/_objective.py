"""The distillation objective: student forward, teacher targets, and the loss between them.

An ``nn.Module`` whose ``forward(idx)`` returns the loss parts on training rows ``idx``, so the
generic trainer (and ``DistributedDataParallel``) can drive it without knowing what it computes.
It owns the student and any learned feature projections; the teacher stays outside its
parameters, so DDP never synchronises or trains it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ModelError, ShapeError, unknown_name
from . import _losses as L
from ._augment import AUGMENTS, augment_batch
from ._config import DistillConfig
from ._data import Rows, tokenize
from ._teachers import ModuleTeacher, Teacher

__all__ = ["DistillObjective", "resolve_loss"]


def resolve_loss(config: DistillConfig, teacher: Teacher) -> str:
    """The loss name to use: ``config.loss``, or (``"auto"``) the natural one for the teacher's outputs."""
    natural = next(name for name in L.OUTPUT_LOSSES if teacher.output in L.OUTPUT_LOSSES[name].natural_for)
    if config.loss == "auto":
        return natural
    loss = L.OUTPUT_LOSSES[config.loss]
    if teacher.output not in loss.outputs:
        raise ConfigError(
            f"DistillConfig.loss={config.loss!r} needs {loss.needs or ' or '.join(loss.outputs)}, but the teacher "
            f"gives {teacher.output}s; use loss={natural!r} (or 'auto')"
        )
    return config.loss


class DistillObjective(nn.Module):
    """``forward(idx) -> {"loss": total, <part>: value, ...}`` on training rows ``idx``."""

    def __init__(self, student: nn.Module, teacher: Teacher, rows: Rows, targets: torch.Tensor | None,
                 config: DistillConfig, loss: str):
        super().__init__()
        self.student = student
        self.rows = rows
        self.targets = targets  # None: run the teacher live (needed for feature matching)
        self.config = config
        self.loss_kind = loss
        self._loss = L.OUTPUT_LOSSES[loss]
        object.__setattr__(self, "_teacher", teacher)  # not a submodule: never trained or synchronised
        self._captured: dict[str, torch.Tensor] = {}
        # Augmentation draws from its own seeded stream: batch k of a run is always perturbed alike.
        self._aug_gen = torch.Generator().manual_seed(config.seed + 7919)
        self._feature_std = (torch.as_tensor(rows.X.std(0)) if rows.X is not None and config.augment == "noise"
                             else None)
        self._hooks: list[Any] = []
        self.projections = nn.ModuleDict()
        self._check_and_hook()

    # ---------------------------------------------------------------- forward
    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx_np = idx.numpy()
        batch = self._student_batch(idx_np)
        labels = self.rows.label_tensor(idx_np)
        augmented = self.training and self.config.augment != "none"
        if augmented:
            batch = augment_batch(batch, self.config.augment, self._aug_gen, scale=self.config.augment_scale,
                                  feature_std=self._feature_std)
            if not AUGMENTS[self.config.augment].keeps_labels:
                labels = None
        self._captured.clear()
        out = _call(self.student, batch)
        teacher_out = self._live_teacher(batch) if augmented or self.targets is None else self.targets[idx]
        out = _align(out, teacher_out)
        parts = self._output_loss(out, teacher_out, labels)
        if self.config.features:
            total_feat = 0.0
            mask = batch.get("attention_mask") if isinstance(batch, dict) else None
            for i, (s_name, t_name) in enumerate(self.config.features):
                proj = self.projections[str(i)]
                f = L.feature_loss(self._captured[f"s:{s_name}"], self._captured[f"t:{t_name}"],
                                   self.config.feature_loss, None if isinstance(proj, nn.Identity) else proj, mask)
                parts[f"feat{i}"] = f
                total_feat = total_feat + f
            parts["loss"] = parts["loss"] + self.config.feature_weight * total_feat
        return parts

    def _output_loss(self, out: torch.Tensor, target: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return self._loss.compute(out, target, labels, self.config.temperature, self.config.alpha, self.rows.task)

    # --------------------------------------------------------------- batches
    def _student_batch(self, idx: np.ndarray) -> Any:
        raw = self.rows.raw(idx)
        if self.rows.is_text:
            return tokenize(self.student, raw, self.config.max_length)
        return torch.as_tensor(raw)

    @torch.no_grad()
    def _live_teacher(self, batch: Any) -> torch.Tensor:
        if not isinstance(self._teacher, ModuleTeacher):
            # Ensembles and estimators: their own outputs() on the batch (arrays only reach here).
            return self._teacher.outputs(batch.numpy()).float().clone()
        module = self._teacher.module
        was = module.training
        module.eval()
        try:
            # Hidden states are compared token by token, so the teacher reads the student's tokens.
            return _call(module, batch).float()
        finally:
            module.train(was)

    # ----------------------------------------------------------- setup checks
    def _check_and_hook(self) -> None:
        probe_idx = np.arange(min(2, len(self.rows)))
        feats = self.config.features
        if feats:
            if not isinstance(self._teacher, ModuleTeacher):
                raise ConfigError(
                    "DistillConfig.features matches hidden layers, which needs the teacher as one torch module; "
                    f"this teacher is a {type(self._teacher).__name__} (ensembles and cached outputs have no layers). "
                    "Drop features=, or pass a single nn.Module teacher"
                )
            if self.rows.is_text:
                _same_vocab(self.student, self._teacher.module)
            s_mods = dict(self.student.named_modules())
            t_mods = dict(self._teacher.module.named_modules())
            for s_name, t_name in feats:
                if s_name not in s_mods:
                    raise unknown_name("student layer", s_name, [n for n in s_mods if n], fix="See student.named_modules().")
                if t_name not in t_mods:
                    raise unknown_name("teacher layer", t_name, [n for n in t_mods if n], fix="See teacher.named_modules().")
                self._hooks.append(s_mods[s_name].register_forward_hook(self._capture(f"s:{s_name}")))
                self._hooks.append(t_mods[t_name].register_forward_hook(self._capture(f"t:{t_name}")))
        batch = self._student_batch(probe_idx)
        was = self.student.training
        self.student.eval()
        with torch.no_grad():
            self._captured.clear()
            out = _call(self.student, batch)
            target = self.targets[torch.as_tensor(probe_idx)] if self.targets is not None else self._live_teacher(batch)
        self.student.train(was)
        _check_shapes(out, target, self.loss_kind)
        for i, (s_name, t_name) in enumerate(feats):
            s_dim = _width(self._captured[f"s:{s_name}"])
            t_dim = _width(self._captured[f"t:{t_name}"])
            # A learned projection bridges different widths (FitNets); it is dropped after training.
            self.projections[str(i)] = nn.Identity() if s_dim == t_dim else nn.Linear(s_dim, t_dim)

    def _capture(self, key: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._captured[key] = output[0] if isinstance(output, tuple) else output

        return hook

    def close(self) -> None:
        """Remove the forward hooks from student and teacher (they are the caller's modules)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._captured.clear()


def _call(model: nn.Module, batch: Any) -> torch.Tensor:
    out = model(**batch) if isinstance(batch, dict) else model(batch)
    if isinstance(out, tuple | list):
        out = out[0]
    if hasattr(out, "last_hidden_state"):
        out = out.last_hidden_state
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"the student returned {type(out).__name__}; distillation needs a tensor output")
    return out


def _align(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A regressor's ``(n, 1)`` output against ``(n,)`` targets (or the reverse) is the same thing."""
    if out.shape != target.shape and out.numel() == target.numel():
        return out.reshape(target.shape)
    return out


def _check_shapes(out: torch.Tensor, target: torch.Tensor, loss: str) -> None:
    out = _align(out, target)
    if out.shape[1:] == target.shape[1:]:
        return
    s, t = tuple(out.shape[1:]), tuple(target.shape[1:])
    if loss == "kd":
        fix = ("class logits must cover the same classes; give the student "
               f"{t[-1] if t else 1} outputs (e.g. its last nn.Linear(..., {t[-1] if t else 1}))")
    else:
        fix = (f"add a learned projection to the student, e.g. student = nn.Sequential(student, "
               f"nn.Linear({s[-1] if s else 1}, {t[-1] if t else 1}))")
    raise ShapeError(f"the teacher outputs {t} per row but the student outputs {s} (loss={loss!r}); {fix}")


def _width(feat: torch.Tensor) -> int:
    return int(feat.shape[1] if feat.dim() == 4 else feat.shape[-1])


def _same_vocab(student: nn.Module, teacher: nn.Module) -> None:
    s_tok, t_tok = getattr(student, "tokenizer", None), getattr(teacher, "tokenizer", None)
    if s_tok is not None and t_tok is not None and len(s_tok) != len(t_tok):
        raise ModelError(
            f"feature matching feeds the teacher the student's tokens, but their vocabularies differ "
            f"({len(s_tok)} vs {len(t_tok)} tokens); use a student with the teacher's tokenizer (ss.zoo.shrink does)"
        )
