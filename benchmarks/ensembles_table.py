"""Print the markdown results table of ``benchmarks/results/ensembles*.json`` (used in docs/ensembles.md).

    python benchmarks/ensembles_table.py benchmarks/results/ensembles-quick.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt  # noqa: E402
from _common import table as md_table  # noqa: E402

COLUMNS = [("dataset", "dataset", ""), ("tool", "tool", ""), ("quality", "accuracy", ".4f"), ("log_loss", "log loss", ".4f"),
           ("brier", "Brier", ".4f"), ("fit_s", "fit s", ".2f"), ("latency_ms", "predict ms", ".1f"), ("n_fits", "fits", "")]


def table(payload: dict) -> str:
    lines = [md_table(payload["rows"], COLUMNS)]
    lines += ["", "| dataset | stacking log loss: ss / sklearn | fit time ss / sklearn (target <= 0.833) | "
              "refit=True: log loss, fit time ratio | refit=\"auto\": log loss, fit time ratio (members refitted) | "
              "sklearn with ss's meta-model | soft / learned / selection log loss | best member |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d, t in payload["targets"].items():
        ok = lambda b: "hit" if b else "miss"  # noqa: E731
        lines.append(
            f"| {d} | {t['stacking_log_loss']:.4f} / {t['sklearn_stacking_log_loss']:.4f} "
            f"({ok(t['stacking_log_loss_le_sklearn'])}) | {t['stacking_fit_time_ratio_median']:.3f} "
            f"({ok(t['stacking_fit_time_le_5_6'])}) | {t['refit_stacking_log_loss']:.4f} "
            f"({ok(t['refit_stacking_log_loss_le_sklearn'])}), {t['refit_stacking_fit_time_ratio_median']:.3f} | "
            + (f"{t['auto_stacking_log_loss']:.4f} ({ok(t['auto_stacking_log_loss_le_sklearn'])}), "
               f"{t['auto_stacking_fit_time_ratio_median']:.3f} ({ok(t['auto_stacking_fit_time_le_5_6'])}) "
               f"({', '.join(t['auto_refit_members']) or 'none'}) | " if "auto_stacking_log_loss" in t else "– | ")
            + f"{fmt(t.get('sklearn_stacking_same_meta_log_loss'), '.4f')} | "
            f"{t['soft_voting_log_loss']:.4f} / {t['voting_learn_log_loss']:.4f} "
            f"({ok(t['voting_learn_beats_soft'])}) / {t['selection_log_loss']:.4f} ({ok(t['selection_beats_soft'])}) | "
            f"{t['best_member_log_loss']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "ensembles-quick.json")
    print(table(json.loads(path.read_text())))
