"""What ``ss.quantize`` returns: the new model and a record of every decision it took."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["QuantRecord", "QuantResult"]


@dataclasses.dataclass
class QuantRecord:
    """Which backend ran and why, which layers were quantized, which stayed float and what each cost.

    ``layers`` holds one dict per layer (torch module or ONNX node) with ``status`` "quantized" or
    "float" and, for float ones, the ``reason``. ``candidates`` holds each backend's measured latency
    (and quality, with ``data=``). ``sensitivity`` maps a layer to the relative quality loss when it
    alone is quantized (filled by the accuracy-aware fallback).
    """

    config: dict[str, Any]
    backend: str
    backend_reason: str
    layers: list[dict[str, Any]]
    candidates: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tolerance: float | None = None
    quality_metric: str | None = None
    quality_float: float | None = None
    quality_quantized: float | None = None
    sensitivity: dict[str, float] = dataclasses.field(default_factory=dict)
    fallback_met: bool | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def quantized(self) -> list[str]:
        return [r["name"] for r in self.layers if r["status"] == "quantized"]

    @property
    def kept_float(self) -> dict[str, str]:
        """Layer name -> why it stayed in float."""
        return {r["name"]: r["reason"] for r in self.layers if r["status"] == "float"}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["quantized"], d["kept_float"] = self.quantized, self.kept_float
        return d

    def summary(self) -> str:
        q, f = len(self.quantized), len(self.kept_float)
        s = f"{self.config['type']} on {self.backend}: {q} layers quantized, {f} kept in float"
        if self.quality_quantized is not None and self.quality_float is not None:
            s += f"; {self.quality_metric} {self.quality_float:.4f} -> {self.quality_quantized:.4f}"
        return s


@dataclasses.dataclass
class QuantResult:
    """``model`` (a new model with the original's interface) and its :class:`QuantRecord`."""

    model: Any
    record: QuantRecord

    def __iter__(self):  # allow ``model, record = ss.quantize(...)``
        return iter((self.model, self.record))
