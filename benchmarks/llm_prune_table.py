"""Markdown table of ``benchmarks/llm_prune.py``'s JSON (the README and docs/llm-prune.md use it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def table(payload: dict) -> str:
    rows = payload["rows"]
    dense = next((r for r in rows if r["name"] == payload.get("baseline", "dense")), rows[0])
    lines = ["| variant | ss.save MB | vs dense | nonzero params (M) | perplexity | KLD to dense | top-1 same |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['size_bytes'] / 1e6:.1f} | {r['size_bytes'] / dense['size_bytes']:.2f}x | "
                     f"{r['nonzero_params'] / 1e6:.1f} | {_f(r.get('perplexity'), '.2f')} | "
                     f"{_f(r.get('kld'), '.4f')} | "
                     f"{_f(100 * r['top1_agreement'], '.1f')} % |")
    lines.append(f"\n- data: {payload.get('data')}")
    lines.append(f"- model: {payload.get('model')}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text())))
