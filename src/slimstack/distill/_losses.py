"""Distillation losses as pure functions of tensors: no state, no knowledge of models or trainers.

Teacher targets are passed as logits; a teacher that only gives probabilities (an ensemble, a
scikit-learn model) is passed as ``log(p)``, which softmax maps back to ``p``.

The names ``DistillConfig.loss`` and ``DistillConfig.feature_loss`` accept are the small registries
:data:`OUTPUT_LOSSES` and :data:`FEATURE_LOSSES`; register another loss there to make it a valid name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .._validate import Choices

__all__ = ["FEATURE_LOSSES", "OUTPUT_LOSSES", "OutputLoss", "cosine_loss", "embedding_loss", "feature_loss",
           "hinton_loss", "kd_loss", "mse_loss"]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. (2015): KL(teacher || student) of the outputs softened by ``temperature``.

    Scaled by ``T**2`` so its gradients keep the size of the hard-label loss's as ``T`` changes.

    Examples
    --------
    >>> s = torch.tensor([[2.0, 0.0]]); kd_loss(s, s, 4.0).item()
    0.0
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def hinton_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """``alpha * kd + (1 - alpha) * cross_entropy``; the KD term alone when ``labels`` is None."""
    kd = kd_loss(student_logits, teacher_logits, temperature)
    if labels is None or alpha >= 1.0:
        return {"loss": kd, "kd": kd}
    ce = F.cross_entropy(student_logits, labels)
    return {"loss": alpha * kd + (1.0 - alpha) * ce, "kd": kd, "ce": ce}


def mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error to the teacher's outputs (regression distillation)."""
    return F.mse_loss(student, teacher)


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``1 - cos(student, teacher)`` averaged over rows (and positions, for hidden states)."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    """Embedding distillation: ``"mse"``, ``"cosine"`` or their sum ``"cosine+mse"``.

    The MSE term is scaled by the embedding width so that, for unit vectors, it stays comparable
    to the cosine term instead of shrinking as 1/dim.
    """
    parts: dict[str, torch.Tensor] = {}
    if "cosine" in kind:
        parts["cosine"] = cosine_loss(student, teacher)
    if "mse" in kind:
        parts["mse"] = mse_loss(student, teacher) * (student.shape[-1] if kind == "cosine+mse" else 1)
    parts["loss"] = sum(parts.values())
    return parts


def feature_loss(
    student_feat: torch.Tensor,
    teacher_feat: torch.Tensor,
    kind: str = "mse",
    projection: torch.nn.Module | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Match a student layer's output to a teacher layer's, through ``projection`` if widths differ.

    Feature maps ``(n, c, h, w)`` are compared channel-last; ``mask`` (``(n, seq)``, 1 = token)
    keeps padding positions of hidden states out of the average.
    """
    if student_feat.dim() == 4:  # conv maps: project channels
        student_feat = student_feat.permute(0, 2, 3, 1)
        teacher_feat = teacher_feat.permute(0, 2, 3, 1)
    if projection is not None:
        student_feat = projection(student_feat)
    per = FEATURE_LOSSES[kind](student_feat, teacher_feat)
    if mask is not None and per.dim() == 2 and mask.shape == per.shape:
        m = mask.to(per.dtype)
        return (per * m).sum() / m.sum().clamp(min=1.0)
    return per.mean()


# Feature losses: (student features, teacher features) -> the loss at every position (last axis reduced).
FEATURE_LOSSES: Choices[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Choices("feature loss")
FEATURE_LOSSES.register("mse", lambda s, t: ((s - t) ** 2).mean(-1))
FEATURE_LOSSES.register("cosine", lambda s, t: 1.0 - F.cosine_similarity(s, t, dim=-1))


@dataclasses.dataclass(frozen=True)
class OutputLoss:
    """One way to match the student's outputs to the teacher's (a ``DistillConfig.loss`` name).

    ``compute(out, target, labels, temperature, alpha, task) -> {"loss", <parts>}``; ``labels`` is
    None for unlabelled rows. ``outputs`` are the teacher outputs (``"logits"``, ``"embedding"``,
    ``"value"``) it can match, described by ``needs`` in the error otherwise; ``loss="auto"`` picks
    the loss whose ``natural_for`` holds the teacher's output.
    """

    compute: Callable[..., dict[str, torch.Tensor]]
    outputs: tuple[str, ...] = ("logits", "embedding", "value")
    natural_for: tuple[str, ...] = ()
    needs: str = ""


def _matched(kind: str) -> Callable[..., dict[str, torch.Tensor]]:
    """Embedding/value matching; regression labels add ``(1 - alpha)`` of the squared error to them."""

    def compute(out, target, labels, temperature, alpha, task):
        parts = embedding_loss(out, target, kind)
        if labels is not None and task == "regression" and alpha < 1.0:
            hard = mse_loss(out.reshape(labels.shape), labels)
            parts = {**parts, "loss": alpha * parts["loss"] + (1.0 - alpha) * hard, "hard": hard}
        return parts

    return compute


OUTPUT_LOSSES: Choices[OutputLoss] = Choices("distillation loss")
OUTPUT_LOSSES.register("kd", OutputLoss(
    lambda out, target, labels, temperature, alpha, task: hinton_loss(out, target, labels, temperature, alpha),
    outputs=("logits",), natural_for=("logits",), needs="class logits"))
OUTPUT_LOSSES.register("mse", OutputLoss(_matched("mse"), natural_for=("value",)))
OUTPUT_LOSSES.register("cosine", OutputLoss(_matched("cosine"), natural_for=("embedding",)))
OUTPUT_LOSSES.register("cosine+mse", OutputLoss(_matched("cosine+mse")))
