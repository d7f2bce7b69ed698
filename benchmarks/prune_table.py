"""Print the Markdown results table of ``benchmarks/prune.py`` from its JSON (for docs/prune.md and the README)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table as md_table  # noqa: E402

COLS = ("group", "name", "quality", "quality_delta", "latency_ms", "speedup", "latency_b1_ms", "speedup_b1", "macs",
        "mac_reduction", "gain_per_mac", "params", "nonzero_params", "size_bytes", "size_ratio")


def table(payload: dict) -> str:
    m = payload["machine"]
    head = (f"`{payload['benchmark']}`{' --quick' if payload.get('quick') else ''}: {m['cpu']}, {m['threads']} threads, "
            f"torch {m['torch']}, {m['date']}; latency = median ms per batch call (batch 256 for digits, 128 sentences "
            "for MiniLM), speedup and MAC reduction against the group's first row; gain_per_mac = speedup / MAC reduction.\n\n")
    return head + md_table(payload["rows"], list(COLS)) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "prune-quick.json")
    print(table(json.loads(path.read_text())))
