"""What ``ss.prune`` returns: the new model and a per-layer record of what was removed and why."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["LayerRecord", "PruneResult"]


@dataclasses.dataclass
class LayerRecord:
    """One layer (or tree) in the pruning record.

    ``action`` is "pruned" or "skipped"; ``before``/``after`` count ``unit`` (channels, neurons,
    heads, weights or nodes); ``reason`` says why the layer was pruned this much or left alone.
    """

    layer: str
    action: str
    unit: str
    before: int | None = None
    after: int | None = None
    reason: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def removed(self) -> int:
        return 0 if self.before is None or self.after is None else self.before - self.after

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d


@dataclasses.dataclass
class PruneResult:
    """The pruned model (a new object; the input is unchanged) and its record.

    Attributes
    ----------
    model : the pruned model, same inputs and outputs as the original.
    record : list of :class:`LayerRecord`, one per layer considered, pruned or skipped.
    summary : dict with totals (parameters or nodes before/after), recovery history and settings.
    """

    model: Any
    record: list[LayerRecord]
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def skipped(self) -> list[LayerRecord]:
        return [r for r in self.record if r.action == "skipped"]

    @property
    def pruned(self) -> list[LayerRecord]:
        return [r for r in self.record if r.action == "pruned"]

    def layer(self, name: str) -> LayerRecord:
        for r in self.record:
            if r.layer == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "record": [r.to_dict() for r in self.record]}

    def __repr__(self) -> str:
        return (f"PruneResult(model={type(self.model).__name__}, pruned={len(self.pruned)} layers, "
                f"skipped={len(self.skipped)})")
