"""What ``ss.prune`` returns: the new model and a per-layer record of what was removed and why."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .._result import LayerRecord, Result

__all__ = ["LayerRecord", "PruneResult"]


@dataclasses.dataclass(repr=False)
class PruneResult(Result):
    """The pruned model (a new object; the input is unchanged) and its record.

    Attributes
    ----------
    model : the pruned model, same inputs and outputs as the original.
    records : list of :class:`LayerRecord`, one per layer (or tree) considered, pruned or skipped;
        ``record`` is the same list (the older name).
    summary : dict with totals (parameters or nodes before/after), recovery history and settings.
    """

    verb: ClassVar[str] = "prune"

    @property
    def record(self) -> list[LayerRecord]:
        return self.records

    @property
    def skipped(self) -> list[LayerRecord]:
        return [r for r in self.records if r.action == "skipped"]

    @property
    def pruned(self) -> list[LayerRecord]:
        return [r for r in self.records if r.action == "pruned"]

    def layer(self, name: str) -> LayerRecord:
        """The record of layer ``name`` (KeyError naming the recorded layers otherwise)."""
        return self.record_for(name)

    def __repr__(self) -> str:
        return (f"PruneResult(model={type(self.model).__name__}, pruned={len(self.pruned)} layers, "
                f"skipped={len(self.skipped)})")
