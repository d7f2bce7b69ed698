"""``slimstack demo``: the end-to-end showcase on built-in data and models, in a few minutes on 2 cores.

Runs the three example recipes shipped with the package (digits CNN pruned and quantized; a
breast_cancer ensemble with voting and a cascade; all-MiniLM-L6-v2 quantized on STS-B), writes
one report with a section per recipe, and prints what each step bought against its original.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["run_demo", "DEMO_RECIPES", "summary_table"]

DEMO_RECIPES = ("digits_cnn", "breast_cancer_ensemble", "minilm_stsb")


def _recipe_path(name: str) -> Path:
    return Path(str(resources.files("slimstack.recipe") / "examples" / f"{name}.yaml"))


def summary_table(reports: list[dict[str, Any]]) -> Table:
    """One row per step: quality, speedup and size against that recipe's original."""
    t = Table(title="what each step bought (against each recipe's original, measured interleaved)")
    for col in ("recipe", "model", "metric", "quality", "change", "speedup", "size ratio"):
        t.add_column(col, justify="left" if col in ("recipe", "model", "metric") else "right")
    for rep in reports:
        rows = rep["rows"]
        base = rows[0]
        for r in rows:
            delta = None if r["quality"] is None or base["quality"] is None else r["quality"] - base["quality"]
            mark = " *" if r["name"] == rep["best"]["name"] else ""
            t.add_row(rep["recipe"]["name"], r["name"] + mark, r["quality_metric"],
                      "-" if r["quality"] is None else f"{r['quality']:.4f}",
                      "-" if delta is None else f"{delta:+.4f}", f"{r['speedup']:.2f}x",
                      f"{r['size_ratio']:.2f}x")
    t.caption = "* best model within the recipe's tolerance for its objective"
    return t


def run_demo(out: str | Path | None = None, threads: int = 2, console: Console | None = None,
             recipes: tuple[str, ...] = DEMO_RECIPES) -> dict[str, Any]:
    from .recipe import load_recipe, run_recipe
    from .report import write_report

    console = console or Console(width=max(Console().width, 150))  # tables stay readable in logs
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="slimstack-demo-"))
    reports = []
    for name in recipes:
        recipe = load_recipe(_recipe_path(name))
        recipe = recipe.model_copy(update={"measure": recipe.measure.model_copy(update={"threads": threads})})
        console.rule(f"[bold]{recipe.name}")
        reports.append(run_recipe(recipe, out / name, console=console))
    combined = {"title": "slimstack demo", "sections": reports}
    write_report(combined, out)
    console.rule("[bold]summary")
    console.print(summary_table(reports))
    console.print(f"report: {out / 'report.html'}")
    return combined
