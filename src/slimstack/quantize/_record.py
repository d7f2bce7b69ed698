"""What ``ss.quantize`` returns: the new model, one record per layer, and the record of every decision."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from .._result import LayerRecord, Result

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


    def layer_records(self) -> list[LayerRecord]:
        """One :class:`~slimstack._result.LayerRecord` per layer: ``action`` "quantized" or "float", bits before/after."""
        default = self.config.get("data", {}).get("bits", 8)
        out = []
        for r in self.layers:
            quantized = r["status"] == "quantized"
            after = _bits(r, default) if quantized else 32
            extra = {k: v for k, v in r.items() if k not in ("name", "status", "reason")}
            reason = r.get("reason") or (f"{r.get('as', r.get('format', 'int'))} on {self.backend}" if quantized else "")
            out.append(LayerRecord(r["name"], "quantized" if quantized else "float", "bits", 32, after, reason, extra))
        return out

    def summary_dict(self) -> dict[str, Any]:
        """Totals and settings: what :attr:`QuantResult.summary` holds."""
        return {"technique": self.config["type"], "backend": self.backend, "backend_reason": self.backend_reason,
                "quantized": len(self.quantized), "kept_float": len(self.kept_float), "tolerance": self.tolerance,
                "quality_metric": self.quality_metric, "quality_float": self.quality_float,
                "quality_quantized": self.quality_quantized, "fallback_met": self.fallback_met}


def _bits(r: dict[str, Any], default: int | float) -> int | float:
    """Stored bits per weight of a quantized layer (int8/int4 codes; a mixed table averages its rows)."""
    if r.get("bits") == "mixed":
        n8, n4 = r.get("int8_rows", 0), r.get("int4_rows", 0)
        return (8 * n8 + 4 * n4) / max(n8 + n4, 1)
    if isinstance(r.get("bits"), int | float):
        return r["bits"]
    if "bits_per_weight" in r:
        return r["bits_per_weight"]
    return 8 if r.get("as", "").startswith("Quant") or r.get("kernel") == "onnxruntime" else default


@dataclasses.dataclass(init=False)
class QuantResult(Result):
    """``ss.quantize``'s result: ``model`` (the original's interface), per-layer ``records`` and ``summary``.

    ``record`` is the full :class:`QuantRecord` (backend choice, candidates, sensitivity, notes);
    ``records`` and ``summary`` are derived from it, so the report reads quantization like every
    other verb. ``model, record = ss.quantize(...)`` unpacks to the model and the QuantRecord, as it
    always has (``Result`` unpacks to ``records``; use ``q.records`` for those).
    """

    verb: ClassVar[str] = "quantize"
    record: QuantRecord | None = None

    def __init__(self, model: Any, record: QuantRecord):
        super().__init__(model, record.layer_records(), record.summary_dict())
        self.record = record

    def extras(self) -> dict[str, Any]:
        r = self.record
        return {"backend": r.backend, "candidates": r.candidates, "sensitivity": r.sensitivity, "notes": r.notes,
                "config": r.config}

    def __iter__(self):  # ``model, record = ss.quantize(...)``: the QuantRecord, kept from before Result
        return iter((self.model, self.record))
