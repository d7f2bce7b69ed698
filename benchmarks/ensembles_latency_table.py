"""Markdown table of ``benchmarks/results/ensembles-latency[-quick].json``: serving latency, compiled vs Python.

    python benchmarks/ensembles_latency_table.py benchmarks/results/ensembles-latency-quick.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table as md_table  # noqa: E402


def pivot(rows: list[dict]) -> list[dict]:
    """One row per dataset, thread count and tool: latency at batch 1 and 256, speed-up over scikit-learn's stacking."""
    get = {(r["dataset"], r.get("threads", 1), r["tool"], r["batch"]): r for r in rows}
    out = []
    for (d, th, tool, b), r in get.items():
        if b != 1 or (d, th, "sk_stacking", 1) not in get:
            continue
        r256 = get.get((d, th, tool, 256), {})
        sk1, sk256 = get[(d, th, "sk_stacking", 1)]["latency_ms"], get[(d, th, "sk_stacking", 256)]["latency_ms"]
        out.append({"dataset": d, "threads": th, "tool": tool, "accuracy": r.get("quality"), "b1": r["latency_ms"],
                    "b256": r256.get("latency_ms"), "x1": sk1 / r["latency_ms"],
                    "x256": None if not r256 else sk256 / r256["latency_ms"], "diff": r.get("max_abs_proba_diff"),
                    "size_bytes": r.get("size_bytes")})
    return out


COLUMNS = [("dataset", "dataset", ""), ("threads", "threads", ""), ("tool", "tool", ""),
           ("accuracy", "accuracy", ".4f"), ("b1", "ms, batch 1", ".3f"), ("b256", "ms, batch 256", ".2f"),
           ("x1", "x faster than sk_stacking (b1)", ".1f"), ("x256", "x faster than sk_stacking (b256)", ".2f"),
           ("diff", "max abs proba diff vs source", ".1e"), ("size_bytes", "size (ss.save)", lambda r: _size(r))]

STACKS = (("fold_averaged", "compiled ss_stacking (fold-averaged)"), ("refit", "compiled ss_stacking_refit"),
          ("sklearn_refit", "compiled sk_stacking"))


def _targets(payload: dict) -> list[dict]:
    out = []
    for d, t in payload.get("targets", {}).items():
        for key, per in t.items():
            if not key.startswith("threads_"):
                continue
            for kind, label in STACKS:
                if f"{kind}_speedup_b1" in per:
                    out.append({"dataset": d, "threads": int(key.removeprefix("threads_")), "stack": label,
                                "x1": per[f"{kind}_speedup_b1"], "x256": per[f"{kind}_speedup_b256"],
                                "ok1": per[f"{kind}_10x_at_1"], "ok256": per[f"{kind}_5x_at_256"],
                                "diff": t.get("max_abs_proba_diff")})
    return out


def _size(r: dict) -> str:
    from slimstack.measure import format_bytes

    return "–" if r.get("size_bytes") is None else format_bytes(r["size_bytes"])


def table(payload: dict) -> str:
    lines = [md_table(pivot(payload["rows"]), COLUMNS), "",
             md_table(_targets(payload), [("dataset", "dataset", ""), ("threads", "threads", ""), ("stack", "stack", ""),
                                          ("x1", "x sk_stacking at b1 (target 10)", ".1f"),
                                          ("x256", "x sk_stacking at b256 (target 5)", ".2f"),
                                          ("ok1", "10x at b1", ""), ("ok256", "5x at b256", ""),
                                          ("diff", "max abs proba diff (dataset)", ".1e")])]
    demo = [r for r in payload["rows"] if r["dataset"] == "demo_breast_cancer"]
    if demo:
        get = {(r["tool"], r["batch"]): r for r in demo}
        drows = [{"tool": t, "accuracy": r["quality"], "b1": r["latency_ms"], "c1": r["cost_vs_lr"],
                  "b256": get[(t, 256)]["latency_ms"], "c256": get[(t, 256)]["cost_vs_lr"],
                  "diff": r.get("max_abs_proba_diff"), "size_bytes": r.get("size_bytes")}
                 for (t, b), r in get.items() if b == 1]
        t = payload.get("demo_targets") or {}
        lines += ["", f"The demo's breast_cancer ensemble (recipe/examples/breast_cancer_ensemble.yaml; learned weights "
                      f"{t.get('learned_weights')} for lr, rf, hgb) against its logistic regression "
                      "(target: compiled ensemble <= 5x the LR):", "",
                  md_table(drows, [("tool", "tool", ""), ("accuracy", "accuracy", ".4f"), ("b1", "ms, batch 1", ".3f"),
                                   ("c1", "x LR (b1)", ".2f"), ("b256", "ms, batch 256", ".3f"),
                                   ("c256", "x LR (b256)", ".2f"), ("diff", "max abs proba diff", ".1e"),
                                   ("size_bytes", "size (ss.save)", _size)])]
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "ensembles-latency-quick.json")
    print(table(json.loads(path.read_text())))
