"""Does the cascade's accuracy promise hold on new data? Many random datasets, one allowance, one risk.

Each run draws a synthetic classification set (``make_classification`` with a random number of
classes, informative features, class separation and label noise), splits it into train and test,
fits ``ss.Cascade(max_accuracy_drop=0.005)`` on train and compares it with its own last stage on
test. Two stage pairs alternate: a 20-tree random forest before a 400-tree one, and logistic
regression before the 400-tree forest. Two threshold rules are compared on the same splits:

- ``bound`` (the default): thresholds tuned on 5-fold out-of-fold predictions over every training
  row, accepted when the exact one-sided upper bound on the drop at 95% confidence (risk 0.05) is
  within the allowance;
- ``holdout``: the earlier rule, a 25% held-out share and the drop plus one paired standard error.

Target (issue 13.5): the share of runs whose test drop exceeds the allowance is at most the risk.
Costs are given as the number of trees (LR = 1), so the cost share does not depend on load.
Full: 24 runs of 8,000 rows with a 400-tree last stage; ``--quick``: 20 runs of 2,000 rows with a
60-tree last stage (the 20-tree first stage stays), 25% of the rows as the test split in both.

Run: ``PYTHONPATH=src python benchmarks/cascade_risk.py [--quick] [--out FILE.json]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, write  # noqa: E402

import slimstack as ss  # noqa: E402

ALLOWANCE = 0.005
RISK = 0.05


def dataset(i: int, n_rows: int) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(1000 + i)
    spec = {"n_samples": n_rows, "n_features": 20, "n_classes": int(rng.integers(2, 5)),
            "n_informative": int(rng.integers(5, 11)), "class_sep": float(rng.uniform(0.6, 1.6)),
            "flip_y": float(rng.uniform(0.0, 0.05)), "random_state": 1000 + i}
    spec["n_redundant"] = 2
    X, y = make_classification(**spec)
    return X.astype(np.float32), y, spec


def stages(pair: str, big: int, seed: int) -> tuple[list, list[float]]:
    rf_big = RandomForestClassifier(n_estimators=big, n_jobs=1, random_state=seed)
    if pair == "rf20":
        return [("rf20", RandomForestClassifier(n_estimators=20, n_jobs=1, random_state=seed)), (f"rf{big}", rf_big)], \
            [20.0, float(big)]
    return [("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))), (f"rf{big}", rf_big)], \
        [1.0, float(big)]


RULES = {
    "bound": {"risk": RISK, "cv": 5},
    "holdout": {"risk": None, "safety": 1.0, "cv": None, "validation_fraction": 0.25},
}


def main(argv=None) -> None:
    args = parse_args("cascade_risk", __doc__.splitlines()[0], argv)
    n_runs, n_rows, big = (20, 2000, 60) if args.quick else (24, 8000, 400)
    runs = []
    t0 = time.perf_counter()
    for i in range(n_runs):
        X, y, spec = dataset(i, n_rows)
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=i)
        pair = "rf20" if i % 2 == 0 else "lr"
        run = {"run": i, "pair": pair, **{k: v for k, v in spec.items() if k != "random_state"}}
        for rule, kw in RULES.items():
            st, costs = stages(pair, big, i)
            c = ss.Cascade(st, max_accuracy_drop=ALLOWANCE, costs=costs, random_state=i, **kw).fit(X_tr, y_tr)
            last = c.stages_[-1][1]
            acc_last = float((last.predict(X_te) == y_te).mean())
            acc = float((c.predict(X_te) == y_te).mean())
            share0 = float(np.mean(c.answered_by(X_te) == 0))
            run[rule] = {"test_drop": acc_last - acc, "exceeds": bool(acc_last - acc > ALLOWANCE + 1e-12),
                         "test_accuracy": acc, "last_stage_accuracy": acc_last, "first_stage_share": share0,
                         "cost_share": (costs[0] + (1 - share0) * costs[1]) / costs[1],
                         "expected_drop": c.expected_drop_, "drop_bound": c.drop_bound_,
                         "thresholds": c.thresholds_.tolist()}
        runs.append(run)
        print(f"run {i:2d} {pair:4s} k={spec['n_classes']} " + "  ".join(
            f"{r}: drop={run[r]['test_drop']:+.4f} first={run[r]['first_stage_share']:.2f}" for r in RULES), flush=True)
    rows, summary = [], {"allowance": ALLOWANCE, "risk": RISK, "runs": n_runs, "rows_per_dataset": n_rows,
                         "test_share": 0.25, "big_forest_trees": big, "seconds": round(time.perf_counter() - t0, 1)}
    for rule in RULES:
        for pair in ("rf20", "lr", "all"):
            sel = [r[rule] for r in runs if pair == "all" or r["pair"] == pair]
            exceed = float(np.mean([s["exceeds"] for s in sel]))
            rows.append({"name": f"cascade_risk: {rule} rule, {'both pairs' if pair == 'all' else pair + ' first'}",
                         "quality": float(np.mean([s["test_accuracy"] for s in sel])), "quality_metric": "accuracy",
                         "latency_ms": None, "size_bytes": None, "params": None, "runs": len(sel),
                         "exceed_share": exceed, "mean_test_drop": float(np.mean([s["test_drop"] for s in sel])),
                         "max_test_drop": float(np.max([s["test_drop"] for s in sel])),
                         "mean_first_stage_share": float(np.mean([s["first_stage_share"] for s in sel])),
                         "mean_cost_share": float(np.mean([s["cost_share"] for s in sel])),
                         "note": (f"test drop > {ALLOWANCE} in {sum(s['exceeds'] for s in sel)}/{len(sel)} runs "
                                  f"(risk {RISK}); mean drop {np.mean([s['test_drop'] for s in sel]):+.4f}; "
                                  f"cost {np.mean([s['cost_share'] for s in sel]):.0%} of the last stage")})
        summary[rule] = {"exceed_share": float(np.mean([r[rule]["exceeds"] for r in runs])),
                         "target_exceed_share_le_risk": float(np.mean([r[rule]["exceeds"] for r in runs])) <= RISK,
                         "config": RULES[rule]}
    print({k: v for k, v in summary.items()}, flush=True)
    write("cascade_risk", args, rows, summary=summary, runs=runs)


if __name__ == "__main__":
    main()
