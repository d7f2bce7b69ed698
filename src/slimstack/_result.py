"""The one result type every compressing verb returns: ``Result(model, records, summary)``.

``ss.prune``, ``ss.quantize``, ``ss.distill`` and ``ss.merge`` each return a subclass of
:class:`Result`. The new model is ``result.model`` (the input is never changed); ``records`` has one
:class:`LayerRecord` per layer (or tree, or merged tensor) the technique considered, acted on or left
alone, with the reason; ``summary`` holds totals and settings. Verb-specific extras (distill's
``history``, quantize's backend choice) are attributes of the subclass and go into :meth:`to_dict`
through :meth:`Result.extras`, so the report and the recipe runner read every step the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

__all__ = ["LayerRecord", "Result"]


@dataclasses.dataclass
class LayerRecord:
    """One layer (or tree, or tensor) in a result's record.

    ``action`` says what happened ("pruned", "quantized", "float", "skipped", "merged", "trained",
    ...); ``before``/``after`` count ``unit`` (channels, neurons, heads, weights, nodes, bits);
    ``reason`` says why the layer was changed this much or left alone.
    """

    layer: str
    action: str
    unit: str = ""
    before: int | float | None = None
    after: int | float | None = None
    reason: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def removed(self) -> int | float:
        return 0 if self.before is None or self.after is None else self.before - self.after

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d


@dataclasses.dataclass
class Result:
    """A verb's output: the new ``model``, its per-layer ``records`` and a ``summary`` dict.

    Subclasses set ``verb`` and may add fields; they override :meth:`extras` to add what only they
    have to :meth:`to_dict`. ``model, records = result`` unpacks like a pair.
    """

    verb: ClassVar[str] = ""

    model: Any
    records: list[LayerRecord] = dataclasses.field(default_factory=list)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    def extras(self) -> dict[str, Any]:
        """What this verb's result has beyond records and summary (JSON-ready)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"verb", "summary", "records", **extras}``; the report and recipes read this."""
        return {"verb": self.verb, "summary": _plain(self.summary),
                "records": [r.to_dict() for r in self.records], **_plain(self.extras())}

    def record_for(self, layer: str) -> LayerRecord:
        for r in self.records:
            if r.layer == layer:
                return r
        raise KeyError(f"no record for layer {layer!r}; recorded: {', '.join(r.layer for r in self.records[:20])}")

    def __iter__(self):
        return iter((self.model, self.records))


def _plain(value: Any) -> Any:
    """Numpy scalars and tuples to plain JSON types, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    return value
