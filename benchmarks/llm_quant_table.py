"""Markdown table of ``benchmarks/llm_quant.py``'s JSON (the README and docs/llm-quantize.md use it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def table(payload: dict) -> str:
    lines = ["| variant | file MB | perplexity | KLD to fp32 | top-1 same | KLD, first 1,024 | decode tok/s | "
             "decode vs Q4_K_M | prefill tok/s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        lines.append(f"| {r['name']} | {_f(r.get('file_mb'), '.2f')} | {_f(r.get('perplexity'), '.3f')} | "
                     f"{_f(r.get('kld'), '.4f')} | {_f(100 * r['top1_agreement'], '.1f')} % | "
                     f"{_f(r.get('kld_first1024'), '.4f')} | "
                     f"{_f(r.get('decode_tokens_per_s'), '.1f')} | {_f(r.get('decode_vs_q4_k_m'), '.2f')} | "
                     f"{_f(r.get('prefill_tokens_per_s'), '.0f')} |")
    s = payload.get("summary", {})
    if "note" in s:
        lines.append(f"\n- note: {s['note']}")
    for key in ("target_a", "target_b", "target_c"):
        t = s.get(key)
        if t:
            detail = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.items()
                               if k != "met" and v is not None and not isinstance(v, dict))
            lines.append(f"{'' if lines[-1].startswith('- ') else chr(10)}- {key}: {'met' if t['met'] else 'missed'} "
                         f"({detail})")
    for key in ("eval", "calibration", "trap"):
        if key in s:
            lines.append(f"- {key}: {s[key]}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text())))
