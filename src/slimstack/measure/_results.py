"""Typed measurement results that serialise to JSON and print as tables."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

__all__ = ["Measurement", "Comparison", "format_bytes"]

_HIGHER_IS_BETTER = {"quality", "throughput"}


@dataclasses.dataclass
class Measurement:
    """Quality, size and speed of one model on one data set, measured on this CPU."""

    name: str
    kind: str
    task: str
    quality: float | None
    quality_metric: str
    metrics: dict[str, float]
    latency_ms: float
    latency_p90_ms: float
    throughput: float
    batch_size: int
    threads: int | None
    runs: int
    size_bytes: int | None
    params: int | None
    nonzero_params: int | None
    macs: int | None
    peak_memory_bytes: int | None
    n_samples: int
    latency_samples_ms: list[float] = dataclasses.field(default_factory=list, repr=False)
    notes: list[str] = dataclasses.field(default_factory=list)
    higher_is_better: bool = True  # of ``quality``: False for perplexity

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not samples:
            d.pop("latency_samples_ms")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        return Comparison({self.name: self}, baseline=self.name).table()

    def __str__(self) -> str:
        return self.table()


@dataclasses.dataclass
class Comparison:
    """Several models measured side by side, timed interleaved in one process."""

    measurements: dict[str, Measurement]
    baseline: str

    def __getitem__(self, name: str) -> Measurement:
        return self.measurements[name]

    def ratio(self, a: str, b: str, field: str = "latency_ms") -> float:
        """``field`` of ``a`` divided by that of ``b`` (e.g. ``ratio("int8", "fp32", "latency_ms")``)."""
        from ..errors import unknown_name

        for n in (a, b):
            if n not in self.measurements:
                raise unknown_name("variant", n, self.measurements)
        va, vb = getattr(self.measurements[a], field), getattr(self.measurements[b], field)
        if va is None or vb in (None, 0):
            return float("nan")
        return float(va) / float(vb)

    def speedup(self, name: str) -> float:
        """How many times faster ``name`` runs than the baseline (baseline latency / its latency)."""
        return self.ratio(self.baseline, name, "latency_ms")

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for name, m in self.measurements.items():
            row = m.to_dict()
            row["speedup"] = self.speedup(name)
            row["size_ratio"] = self.ratio(name, self.baseline, "size_bytes")
            rows.append(row)
        return {"baseline": self.baseline, "rows": rows}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def rich_table(self):
        from rich.table import Table

        first = next(iter(self.measurements.values()))
        if first.task == "lm":
            return self._lm_table(Table)
        t = Table(title=f"{first.task} · batch {first.batch_size} · {first.threads} threads · "
                        f"median of {first.runs} interleaved runs")
        for col in ("model", first.quality_metric, "latency ms (p50/p90)", "speedup", "throughput/s", "size",
                    "params (nonzero)", "MACs/sample", "peak mem"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for name, m in self.measurements.items():
            t.add_row(
                name,
                "-" if m.quality is None else f"{m.quality:.4f}",
                f"{m.latency_ms:.2f} / {m.latency_p90_ms:.2f}",
                f"{self.speedup(name):.2f}x",
                f"{m.throughput:,.0f}",
                format_bytes(m.size_bytes),
                "-" if m.params is None else f"{m.params:,} ({m.nonzero_params:,})",
                "-" if m.macs is None else f"{m.macs:,}",
                format_bytes(m.peak_memory_bytes),
            )
        return t

    def _lm_table(self, Table):
        first = next(iter(self.measurements.values()))
        t = Table(title=f"causal LM · perplexity: lower is better · batch 1 · {first.threads} threads · "
                        f"median of {first.runs} interleaved runs")
        for col in ("model", "perplexity", "KLD", "top-1 same", "decode tok/s", "speedup",
                    "prefill tok/s", "first token ms", "size", "peak mem"):
            t.add_column(col, justify="left" if col == "model" else "right")

        def f(m: Measurement, key: str, fmt: str, scale: float = 1.0) -> str:
            v = m.metrics.get(key)
            return "-" if v is None else format(v * scale, fmt)

        for name, m in self.measurements.items():
            t.add_row(name, "-" if m.quality is None else f"{m.quality:.3f}", f(m, "kld", ".5f"),
                      f(m, "top1_agreement", ".1%"), f(m, "decode_tokens_per_s", ".1f"), f"{self.speedup(name):.2f}x",
                      f(m, "prefill_tokens_per_s", ".0f"), f(m, "ttft_ms", ".0f"), format_bytes(m.size_bytes),
                      format_bytes(m.peak_memory_bytes))
        return t

    def table(self, width: int = 140) -> str:
        from rich.console import Console

        console = Console(width=width, record=True, file=_Null())
        console.print(self.rich_table())
        return console.export_text()

    def __str__(self) -> str:
        return self.table()


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


def format_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
