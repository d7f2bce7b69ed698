"""The language-model part of a report: quality (perplexity, KLD) against decode speed and size.

Rows measured on text (task ``"lm"``) carry perplexity as their quality, KLD and top-1 agreement
to the original, and decode/prefill tokens per second. ``lm_summary`` puts those beside each
other in the JSON; ``lm_html`` renders them as a table and two plots from that JSON alone.
"""

from __future__ import annotations

import html
from typing import Any

from ..measure import format_bytes
from ._svg import scatter

__all__ = ["lm_summary", "lm_html"]

_FIELDS = ("perplexity", "kld", "kld_p99", "top1_agreement", "decode_tokens_per_s", "prefill_tokens_per_s")


def lm_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """One record per LM row: name, size_bytes and the quality/speed metrics (None when no row is an LM)."""
    lm_rows = [r for r in rows if r.get("task") == "lm"]
    if not lm_rows:
        return None
    out = []
    for r in lm_rows:
        m = r.get("metrics") or {}
        out.append({"name": r["name"], "kind": r.get("kind"), "size_bytes": r.get("size_bytes"),
                    **{f: m.get(f) for f in _FIELDS}})
    return out


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def lm_html(report: dict[str, Any], h2: str) -> str:
    summary = report.get("lm")
    if not summary:
        return ""
    head = ["model", "perplexity", "KLD", "KLD p99", "top-1 agree", "decode tok/s", "prefill tok/s", "size"]
    trs = []
    for r in summary:
        cells = [r["name"], _fmt(r["perplexity"], ".3f"), _fmt(r["kld"], ".4f"), _fmt(r["kld_p99"], ".3f"),
                 _fmt(r["top1_agreement"], ".3f"), _fmt(r["decode_tokens_per_s"], ".1f"),
                 _fmt(r["prefill_tokens_per_s"], ".0f"), format_bytes(r.get("size_bytes"))]
        trs.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    table = ('<table id="lm-quality-speed"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead>"
             f"<tbody>{''.join(trs)}</tbody></table>")
    plots = [
        scatter([(r["name"], r["decode_tokens_per_s"], r["perplexity"]) for r in summary],
                title="perplexity against decode speed", xlabel="decode tokens/s (batch 1)", ylabel="perplexity",
                klass="lm-decode"),
        scatter([(r["name"], r["size_bytes"], r["kld"]) for r in summary], title="KLD to the original against size",
                xlabel="bytes on disk (log scale)", ylabel="KLD (nats/token)", log_x=True, klass="lm-size"),
    ]
    return (f"<{h2}>Language model: quality against decode speed and size</{h2}>"
            "<p class=\"meta\">Perplexity on the held-out text (lower is better); KLD: mean per-token "
            "KL(original || model) of next-token distributions; decode: 128 new tokens after a 16-token prompt.</p>"
            f"{table}<div class=\"charts\">{''.join(p for p in plots if p)}</div>")
