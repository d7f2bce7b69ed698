"""The run report: a JSON document, and an HTML page rendered only from that JSON."""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

from .._utils import atomic_file
from ..measure import format_bytes
from ._lm import lm_html
from ._svg import bars, line, scatter

__all__ = ["build_report", "write_report", "render_html", "render_section", "pareto_front", "pick_best",
           "record_actions"]

_OBJECTIVE_FIELD = {"latency": "latency_ms", "size": "size_bytes", "throughput": "throughput"}


def pareto_front(rows: list[dict[str, Any]], cost: str) -> list[str]:
    """Names of the rows no other row beats on both quality (higher) and ``cost`` (lower)."""
    sign = -1 if cost == "throughput" else 1
    ok = [r for r in rows if r.get("quality") is not None and r.get(cost) is not None]
    q = {r["name"]: _signed_quality(r) for r in ok}
    front = []
    for r in ok:
        dominated = any(
            o is not r and q[o["name"]] >= q[r["name"]] and sign * o[cost] <= sign * r[cost]
            and (q[o["name"]] > q[r["name"]] or sign * o[cost] < sign * r[cost])
            for o in ok
        )
        if not dominated:
            front.append(r["name"])
    return front


def _signed_quality(row: dict[str, Any]) -> float:
    """Quality with the sign that makes higher better (perplexity rows carry higher_is_better=False)."""
    return row["quality"] if row.get("higher_is_better", True) else -row["quality"]


def pick_best(rows: list[dict[str, Any]], baseline: str, tolerance: float, objective: str) -> dict[str, Any]:
    """The best row by the objective among those within ``tolerance`` relative quality loss."""
    field = _OBJECTIVE_FIELD[objective]
    base = next(r for r in rows if r["name"] == baseline)
    higher = base.get("higher_is_better", True)  # perplexity: lower is better, the bound is a ceiling
    floor = base["quality"] * (1 - tolerance if higher else 1 + tolerance) if base.get("quality") is not None else None
    within = [r for r in rows if floor is None or (r.get("quality") is not None
                                                   and (r["quality"] >= floor if higher else r["quality"] <= floor))]
    sign = -1 if objective == "throughput" else 1
    if within:
        best = min(within, key=lambda r: (sign * (r.get(field) or 0)))
        return {"name": best["name"], "met_tolerance": True, "quality_floor": floor}
    closest = max(rows, key=lambda r: float("-inf") if r.get("quality") is None else _signed_quality(r))
    return {"name": closest["name"], "met_tolerance": False, "quality_floor": floor}


def build_report(recipe: Any, rows: list[dict[str, Any]], baseline: str, steps: list[dict[str, Any]],
                 extra: dict | None = None) -> dict:
    """The report document for ``rows`` (``Comparison.to_dict()["rows"]``) against ``baseline``."""
    cost = _OBJECTIVE_FIELD[recipe.objective]
    report = {
        "title": f"slimstack report: {recipe.name}",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "recipe": recipe.model_dump(),
        "baseline": baseline,
        "objective": recipe.objective,
        "tolerance": recipe.tolerance,
        "rows": rows,
        "steps": steps,
        "pareto_latency": pareto_front(rows, "latency_ms"),
        "pareto_size": pareto_front(rows, "size_bytes"),
        "best": pick_best(rows, baseline, recipe.tolerance, recipe.objective),
        "pareto_objective": pareto_front(rows, cost),
    }
    from ._lm import lm_summary

    lm = lm_summary(rows)
    if lm is not None:  # causal LMs: perplexity and KLD beside decode tokens/s and size
        report["lm"] = lm
    if extra:
        report.update(extra)
    return report


def write_report(report: dict[str, Any], out: Path) -> None:
    """Write ``report.json`` and ``report.html`` into ``out``, each atomically and readable by the owner only
    (mode 0600 whatever the umask: a report names local paths and data)."""
    html_text = render_html(json.loads(json.dumps(report, default=str)))
    for name, write in (("report.json", lambda fh: json.dump(report, fh, indent=2, default=str)),
                        ("report.html", lambda fh: fh.write(html_text))):
        with atomic_file(Path(out) / name) as fh:
            os.fchmod(fh.fileno(), 0o600)
            write(fh)


def record_actions(record: Any) -> dict[str, int]:
    """How many layers (trees, tensors, members) a step's record lists per action, e.g. {"pruned": 3}.

    Every step record has one shape, ``{"verb", "summary", "records", ...}`` (``Result.to_dict()``), so
    this reads prune, quantize, distill, merge, ensemble and cascade steps alike.
    """
    counts: dict[str, int] = {}
    records = record.get("records") if isinstance(record, dict) else None
    for r in records or []:
        action = str(r.get("action", "?")) if isinstance(r, dict) else "?"
        counts[action] = counts.get(action, 0) + 1
    return counts


def _actions_cell(record: Any) -> str:
    counts = record_actions(record)
    return ", ".join(f"{n} {a}" for a, n in counts.items()) or "-"


def _find(obj: Any, key: str) -> list[Any]:
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                found.append(v)
            found += _find(v, key)
    elif isinstance(obj, list):
        for v in obj:
            found += _find(v, key)
    return found


def _sensitivity_charts(report: dict) -> list[str]:
    charts = []
    for step in report.get("steps", []):
        for sens in _find(step.get("record"), "sensitivity"):
            if isinstance(sens, dict) and isinstance(sens.get("curves"), dict):
                # pruning's analysis: {"baseline": q, "curves": {unit: {ratio: quality}}}; bar = worst drop
                base = sens.get("baseline") or 0.0
                sens = {unit: base - min(curve.values()) for unit, curve in sens["curves"].items() if curve}
            if isinstance(sens, dict):
                items = []
                for layer, v in sens.items():
                    val = v if isinstance(v, int | float) else (v.get("cost") or v.get("drop") or v.get("loss")
                                                                if isinstance(v, dict) else None)
                    if isinstance(val, int | float):
                        items.append((str(layer), float(val)))
                if items:
                    charts.append(bars(items, title=f"per-layer sensitivity (step {step['index']} {step['kind']})",
                                       ylabel="quality loss", klass="sensitivity"))
    return charts


def _curve_charts(report: dict) -> list[str]:
    charts = []
    for step in report.get("steps", []):
        for curve in _find(step.get("record"), "curve"):
            pts = []
            if isinstance(curve, dict) and "accuracy" in curve and "cost" in curve:
                pts = list(zip(curve["cost"], curve["accuracy"]))
            for p in curve if isinstance(curve, list) else []:
                if isinstance(p, dict):
                    c = p.get("cost") or p.get("mean_cost")
                    a = p.get("accuracy")
                    pts.append((c, a))
            if pts:
                charts.append(line(pts, title=f"cascade accuracy against cost (step {step['index']})",
                                   xlabel="mean cost", ylabel="accuracy", klass="cascade"))
    return charts


_STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#111}"
          "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
          "td:first-child,th:first-child{text-align:left}tr.best{background:#ecfdf5;font-weight:600}"
          ".charts{display:flex;flex-wrap:wrap;gap:1rem}.meta{color:#555}pre{text-align:left;max-height:300px;"
          "overflow:auto}section{border-top:2px solid #ddd;margin-top:2rem}")


def render_html(report: dict[str, Any]) -> str:
    """The whole page for one report, or for a report with ``sections`` (one per recipe)."""
    sections = report.get("sections")
    if sections is None:
        body = render_section(report, level=1)
    else:
        body = f"<h1>{html.escape(report['title'])}</h1>" + "".join(
            f"<section>{render_section(sec, level=2)}</section>" for sec in sections)
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(report['title'])}"
            f"</title><style>{_STYLE}</style></head><body>{body}</body></html>")


def render_section(report: dict[str, Any], level: int = 1) -> str:
    h1, h2 = f"h{level}", f"h{level + 1}"
    rows = report["rows"]
    metric = rows[0]["quality_metric"] if rows else "quality"
    best = report.get("best", {})
    head = ["model", metric, "latency ms", "speedup", "size", "size ratio", "params (nonzero)", "MACs", "peak mem"]
    trs = []
    for r in rows:
        cls = ' class="best"' if r["name"] == best.get("name") else ""
        q = "-" if r.get("quality") is None else f"{r['quality']:.4f}"
        params = "-" if r.get("params") is None else f"{r['params']:,} ({r.get('nonzero_params') or 0:,})"
        cells = [r["name"], q, f"{r['latency_ms']:.2f}", f"{r.get('speedup', 1):.2f}x", format_bytes(r.get("size_bytes")),
                 f"{r.get('size_ratio') or float('nan'):.2f}x", params,
                 "-" if r.get("macs") is None else f"{r['macs']:,}", format_bytes(r.get("peak_memory_bytes"))]
        trs.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    table = ('<table class="measurements" id="measurements"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
             + "".join(trs) + "</tbody></table>")
    step_rows = "".join(
        f"<tr><td>{s['index']}</td><td>{html.escape(s['kind'])}</td><td>{html.escape(str(s.get('method') or ''))}</td>"
        f"<td>{s.get('seconds', '')}</td><td class=\"layers\">{html.escape(_actions_cell(s.get('record')))}</td>"
        f"<td><details><summary>record</summary><pre>"
        f"{html.escape(json.dumps(s.get('record'), indent=1)[:20000])}</pre></details></td></tr>"
        for s in report.get("steps", [])
    )
    steps = ('<table id="steps"><thead><tr><th>#</th><th>step</th><th>method</th><th>seconds</th><th>layers</th>'
             '<th>record</th></tr>'
             f"</thead><tbody>{step_rows}</tbody></table>") if step_rows else "<p>No steps.</p>"
    plots = [
        scatter([(r["name"], r["latency_ms"], r.get("quality")) for r in rows], title="quality against latency",
                xlabel="latency ms (median, log scale)", ylabel=metric, front=report.get("pareto_latency", []),
                log_x=True, klass="pareto-latency"),
        scatter([(r["name"], r.get("size_bytes"), r.get("quality")) for r in rows], title="quality against size",
                xlabel="bytes on disk (log scale)", ylabel=metric, front=report.get("pareto_size", []), log_x=True,
                klass="pareto-size"),
        *_sensitivity_charts(report),
        *_curve_charts(report),
        *report.get("extra_charts", []),
    ]
    verdict = ("within tolerance" if best.get("met_tolerance") else
               "<strong>nothing met the tolerance</strong>; the closest model is shown")
    summary = (f"<p>Objective: <b>{html.escape(report['objective'])}</b>, tolerance {report['tolerance']:.2%} relative "
               f"{html.escape(metric)} loss against <b>{html.escape(report['baseline'])}</b>. Best: "
               f"<b class=\"best-name\">{html.escape(str(best.get('name')))}</b> ({verdict}).</p>")
    machine = ""
    if rows:
        machine = f"<p class=\"meta\">batch {rows[0]['batch_size']}, {rows[0]['threads']} threads, median of " \
                  f"{rows[0]['runs']} interleaved runs; generated {html.escape(report['created'])}.</p>"
    return (f"<{h1}>{html.escape(report['title'])}</{h1}>{summary}{machine}"
            f"<{h2}>Models side by side</{h2}>{table}<{h2}>Plots</{h2}><div class=\"charts\">"
            f"{''.join(p for p in plots if p)}</div>{lm_html(report, h2)}<{h2}>Steps</{h2}>{steps}")
