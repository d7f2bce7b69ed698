"""Print the Markdown table of ``benchmarks/distill.py``'s ``sizes`` part (used in docs/distill.md).

Usage: ``python benchmarks/distill_sizes_table.py [benchmarks/results/distill.json]``. One row per student and
epoch budget: labels only, the issue's config (T=4, alpha=0.3, lr auto) and, in the full run, every default;
each gain is the mean of the per-seed differences with its standard error, and how many seeds were >= labels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table as md_table  # noqa: E402


def _gain(e: dict, prefix: str) -> str:
    se = e.get(f"{prefix}gain_se")
    n = len(e["labels_seeds"])
    return (f"{e[f'{prefix}gain']:+.4f}" + (f" ± {se:.4f}" if se is not None else "")
            + f" ({e[f'{prefix}seeds_ge_labels']}/{n})")


def _lrs(values: list[float]) -> str:
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{lr:g}" + (f" x{c}" if c > 1 else "") for lr, c in sorted(counts.items()))


def table(payload: dict) -> str:
    s = payload["summary"]["sizes"]
    students = s["students"]
    defaults = "defaults_mean" in students[0]
    cols = [("student", "student", lambda e: e["student"]), ("epochs", "epochs", lambda e: str(e["epochs"])),
            ("labels", "labels only", lambda e: f"{e['labels_mean']:.4f}"),
            ("distilled", "distilled T=4 a=0.3", lambda e: f"{e['distilled_mean']:.4f}"),
            ("gain", "gain ± s.e. (seeds >=)", lambda e: _gain(e, "")),
            ("lr", "chosen lr", lambda e: _lrs(e["chosen_lr"]))]
    if defaults:
        cols += [("defaults", "every default (a=0.5)", lambda e: f"{e['defaults_mean']:.4f}"),
                 ("dgain", "gain ± s.e. (seeds >=)", lambda e: _gain(e, "defaults_"))]
    head = (f"`benchmarks/distill.py{' --quick' if payload.get('quick') else ''} --only sizes`, "
            f"{len(s.get('seeds', students[0]['labels_seeds']))} seeds, {s['test_rows']} test images, "
            f"teacher {s['teacher_accuracy']:.4f}, run {s['run_date']}\n\n")
    return head + md_table(students, cols) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "distill.json")
    print(table(json.loads(path.read_text())))
