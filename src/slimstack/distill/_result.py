"""What ``ss.distill`` returns: the trained student, a record per layer, a summary and the history."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from .._result import LayerRecord, Result

__all__ = ["DistillResult", "trained_records"]


@dataclasses.dataclass(repr=False)
class DistillResult(Result):
    """The trained student (a new object; the one passed in is unchanged), its records and history.

    Attributes
    ----------
    model : the trained student.
    records : list of :class:`~slimstack.LayerRecord`, one per student layer that holds parameters:
        ``"trained"`` (its parameters were optimised) or ``"frozen"`` (``requires_grad=False``, left
        as it was), and one ``"dropped"`` record per learned feature projection (used in training only).
    summary : dict
        Which loss and teacher ran, whether cached teacher outputs were reused, the learning rate
        (and the range test behind ``lr="auto"``), the best epoch, why training stopped, the number
        of processes and the timings. ``record`` is the same dict (the older name).
    history : list of dict
        One dict per epoch: ``epoch``, ``step``, ``loss`` and its parts (``kd``, ``ce``, ``cosine``,
        ``mse``, ``feat0``...), ``lr``, ``seconds`` and ``val`` (with ``val`` data; epoch 0 is the
        starting weights).
    """

    verb: ClassVar[str] = "distill"

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def record(self) -> dict[str, Any]:
        return self.summary

    def extras(self) -> dict[str, Any]:
        return {"history": self.history}

    def __repr__(self) -> str:
        return (f"DistillResult(model={type(self.model).__name__}, epochs={len([h for h in self.history if h.get('epoch')])}, "
                f"best_epoch={self.summary.get('best_epoch')}, loss={self.summary.get('loss')!r})")


def trained_records(student: nn.Module) -> list[LayerRecord]:
    """One record per module of ``student`` that holds parameters: trained, or frozen and why."""
    records = []
    for name, module in student.named_modules():
        params = list(module.parameters(recurse=False))
        if not params:
            continue
        total = sum(p.numel() for p in params)
        trained = sum(p.numel() for p in params if p.requires_grad)
        if trained:
            reason = "optimised on the distillation loss" + ("" if trained == total else
                                                              f" ({trained} of {total}; the rest requires_grad=False)")
            records.append(LayerRecord(name or type(student).__name__, "trained", "parameters", total, total, reason,
                                       {"type": type(module).__name__}))
        else:
            records.append(LayerRecord(name or type(student).__name__, "frozen", "parameters", total, total,
                                       "requires_grad=False: left as the student had it",
                                       {"type": type(module).__name__}))
    return records
