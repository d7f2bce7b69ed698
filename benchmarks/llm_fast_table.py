"""Markdown tables of ``benchmarks/llm_fast.py``'s JSON (the README and docs/llm-fast.md use them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def table(payload: dict) -> str:
    rows = payload["rows"]
    s = payload.get("summary", {})
    speed = "CPU tok/s" if "cpu" in str(s.get("speed", "")).split(" at ")[0] else "tok/s"
    key = "decode_cpu_tokens_per_s" if speed == "CPU tok/s" else "decode_tokens_per_s"
    spread = any("kld_spread" in r for r in rows)
    lines = [f"| variant | file MB | KLD to fp32 | KLD before 4-bit | top-1 same | perplexity | decode {speed} "
             "| vs Q4_K_M |" + (" KLD (spread windows) |" if spread else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if spread else "")]
    for r in (r for r in rows if r.get("kind") != "cut"):
        lines.append(f"| {r['name']} | {r['file_mb']:.1f} | {r['kld']:.3f} | "
                     f"{_f((r.get('float') or {}).get('kld'), '.3f')} | {100 * r['top1_agreement']:.1f} % | "
                     f"{r['perplexity']:.1f} | {r[key]:.1f} | {r['speed_vs_q4_k_m']:.2f}x |"
                     + (f" {_f(r.get('kld_spread'), '.3f')} |" if spread else ""))
    cuts = [r for r in rows if r.get("kind") == "cut"]
    if cuts:
        lines += ["", f"| structural cut (llama.cpp Q4_0, speed only) | file MB | decode {speed} | vs Q4_K_M |",
                  "|---|---|---|---|"]
        for r in cuts:
            lines.append(f"| {r['name'][4:]} | {r['file_mb']:.1f} | {r[key]:.1f} | {r['speed_vs_q4_k_m']:.2f}x |")
    d = s.get("target_d", {})
    if d:
        lines.append(f"\n- target (d), >= 1.5x Q4_K_M's decode speed with KLD <= Q4_K_M's ({_f(d.get('q4_k_m_kld'), '.3f')}):"
                     f" {'met by ' + d['by'] if d.get('met') else 'missed'}; best KLD at >= 1.5x: "
                     f"{_f(d.get('best_kld_at_1.5x'), '.3f')} ({d.get('best_at_1.5x')}), gap "
                     f"{_f(d.get('gap_kld'), '+.3f')}")
    for k in ("speed", "eval", "train", "machine_note"):
        if s.get(k):
            lines.append(f"- {k.replace('_', ' ')}: {s[k]}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text())))
