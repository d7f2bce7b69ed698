"""What ``ss.merge(..., return_result=True)`` returns: the merged model, a record per tensor, the summary."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .._result import LayerRecord, Result

__all__ = ["MergeResult"]


@dataclasses.dataclass(repr=False)
class MergeResult(Result):
    """The merged model (a new object; the inputs are unchanged) and what happened to each tensor.

    Attributes
    ----------
    model : the merged model, of the first model's type (of ``base``'s for task arithmetic and TIES).
        Its ``merge_record_`` attribute is ``summary`` (the same dict).
    records : one :class:`~slimstack._result.LayerRecord` per state-dict entry: ``"merged"`` parameters
        (by the method's rule), ``"averaged"`` or ``"recalibrated"`` float buffers (BatchNorm statistics),
        ``"kept"`` non-float entries taken from the template.
    summary : method, config, number of models, family, and the method's details (greedy-soup scores and
        ingredients kept, chosen scaling and the scores behind it, TIES sign conflicts).
    """

    verb: ClassVar[str] = "merge"

    @property
    def merged(self) -> list[LayerRecord]:
        return [r for r in self.records if r.action == "merged"]

    def __repr__(self) -> str:
        return (f"MergeResult(model={type(self.model).__name__}, method={self.summary.get('method')}, "
                f"{len(self.merged)} parameter tensors merged)")
