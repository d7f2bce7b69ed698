"""Section 1 of ``hierarchical.py``: cascades on digits and the 20k synthetic set, Python and compiled.

A cheap first stage (LR, torch MLPs (64, 64) and (256, 256), RBF SVCs, kNN(5)) before the full stacking
ensemble; thresholds tuned on the validation split when it has enough rows for the risk rule
(``rows_needed``), else on out-of-fold predictions over train+val; the first stage chosen on that tuning
data by the modelled cost of its compiled cascade (``choose_cheap``); figures on the test split.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import size_bytes, timed  # noqa: E402

BATCH = 256

def timed_interleaved(models: dict[str, Any], X: np.ndarray, rounds: int, threads: int | None,
                      batch: int = BATCH) -> dict[str, dict[str, float]]:
    """Median over ``rounds`` of the time to predict all of ``X`` in calls of ``batch`` rows, per variant.

    Through ``ss.compare`` (``_common.timed``): variants rotate their order every round with a
    cool-down between calls, so load drift on the shared machine hits all of them alike.
    ``latency_ms`` is per call of ``batch`` rows, ``cost_ms_per_sample`` per row.
    """
    return timed(models, X, batch=batch, threads=threads, runs=rounds, warmup=1, whole=True)


# -- 1. cascade --------------------------------------------------------------------------------
def cascade_data(name: str, quick: bool, seed: int = 0) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    import slimstack as ss

    if name == "digits":
        splits = {s: ss.datasets.load("digits", split=s, seed=seed).flat() for s in ("train", "val", "test")}
        return {s: (d.X.astype(np.float32), d.y) for s, d in splits.items()}, {"n_samples": 1797, "split_seed": seed}
    X, y = make_classification(n_samples=20000, n_features=40, n_informative=15, n_classes=3, flip_y=0.05,
                               random_state=0)
    X = X.astype(np.float32)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.4, random_state=seed, stratify=y)
    X_val, X_te, y_val, y_te = train_test_split(X_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest)
    note = {"n_samples": 20000, "split": f"60/20/20 train/val/test, stratified, seed {seed}"}
    if quick:  # subsample train (SVC and RF fits dominate) and val/test (timing)
        X_tr, y_tr = X_tr[:3000], y_tr[:3000]
        X_val, y_val, X_te, y_te = X_val[:2000], y_val[:2000], X_te[:2000], y_te[:2000]
        note["quick_subsample"] = "train 3000, val 2000, test 2000 rows of the 20k set"
    return {"train": (X_tr, y_tr), "val": (X_val, y_val), "test": (X_te, y_te)}, note


def stacking(quick: bool, seed: int = 0):
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    import slimstack as ss

    n_trees = 50 if quick else 200
    members = [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
        ("rf", RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1)),
        ("hgb", HistGradientBoostingClassifier(max_iter=50 if quick else 200, random_state=seed)),
        ("knn", make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=15))),
        ("svc", make_pipeline(StandardScaler(), SVC(probability=True, random_state=seed))),
    ]
    # refit=True: one copy of each member at inference (the fold-averaging default would cost 5x)
    return ss.StackingEnsemble(members, cv=5, refit=True, random_state=seed), {
        "members": ["LR", f"RF({n_trees})", f"HistGradientBoosting({50 if quick else 200} iterations)", "kNN(15)",
                    "SVC(probability=True)"],
        "final_estimator": "LogisticRegression", "cv": 5, "refit": True}


def cheap_candidates(seed: int = 0) -> dict[str, Any]:
    """First-stage candidates; the rule in :func:`choose_cheap` picks one by measurement on tuning data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    import slimstack as ss

    return {
        "lr": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "mlp": ss.TorchClassifier(prefit=False, hidden_layer_sizes=(64, 64), epochs=30, lr=1e-2, random_state=seed),
        "mlp_wide": ss.TorchClassifier(prefit=False, hidden_layer_sizes=(256, 256), epochs=30, lr=1e-2,
                                       random_state=seed),
        "svc": SVC(probability=True, random_state=seed),  # RBF, gamma="scale", on the features as given
        "svc_c10": SVC(C=10.0, probability=True, random_state=seed),
        "knn": KNeighborsClassifier(n_neighbors=5),
    }


def rows_needed(allowance: float = 0.002, risk: float = 0.05) -> int:
    """Tuning rows below which no first-stage answer can pass the risk rule unless it beats the last stage.

    With no harmful disagreement, the rule's upper bound on P(first wrong, last right) is
    ``1 - (risk / 2) ** (1 / n)`` (Clopper-Pearson at ``risk / 2``); it is within ``allowance`` from
    ``n = ln(risk / 2) / ln(1 - allowance)`` rows on (1,843 for 0.2 points at 95 %).
    """
    return int(np.ceil(np.log(risk / 2) / np.log1p(-allowance)))


def compiled_costs(models: dict[str, Any], X: np.ndarray, threads: int) -> dict[str, dict[str, float]]:
    """Per-row cost at 256-row calls and fixed per-call overhead of each compiled model, interleaved.

    As ``Cascade`` measures its stages: a full batch and a 16-row call, ``t(n) = overhead + per_row * n``.
    """
    big = timed_interleaved(models, X[:2048], rounds=5, threads=threads)
    small = timed(models, X, batch=16, threads=threads, runs=5, warmup=1)
    out = {}
    for n in models:
        t_big, t_small = big[n]["cost_ms_per_sample"] * BATCH, small[n]["latency_ms"]
        per_row = max((t_big - t_small) / (BATCH - 16), 0.0)
        out[n] = {"cost_ms_per_sample": t_big / BATCH, "per_row_ms": per_row,
                  "call_overhead_ms": float(np.clip(t_big - per_row * BATCH, 0.0, t_big))}
    return out


def choose_cheap(cascades: dict[str, Any], compiled: dict[str, dict[str, float]],
                 python_costs: dict[str, float]) -> tuple[str, dict[str, dict[str, float]]]:
    """The candidate whose compiled cascade has the lowest modelled cost per row against the compiled stack.

    Everything comes from tuning data, never the test split: the share of rows the first stage may
    answer at the risk-controlled threshold (``stage_share_``, on the out-of-fold or validation
    predictions) and the compiled costs measured on tuning rows. The model is the cascade's own:
    the first stage on every row, the stack's per-row cost on the deferred share and its per-call
    overhead once for every 256-row batch with a deferred row. Ties go to the more accurate stage.
    """
    info = {}
    s = compiled["stack"]
    for name, c in cascades.items():
        first = float(c.stage_share_[name])
        reach = 1.0 - first
        modelled = (compiled[name]["cost_ms_per_sample"] + reach * s["per_row_ms"]
                    + s["call_overhead_ms"] * (1.0 - (1.0 - reach) ** BATCH) / BATCH)
        curve = c.curve_
        all_first = np.flatnonzero(curve["stage_share"][:, 0] >= 1.0)
        acc = float(curve["accuracy"][all_first[0]]) if len(all_first) else float("nan")
        info[name] = {"oof_accuracy": acc, "tuning_share_first": first, "tuning_drop_bound": c.drop_bound_,
                      "cost_ms_per_sample": python_costs[name],
                      "compiled_cost_ms_per_sample": compiled[name]["cost_ms_per_sample"],
                      "compiled_cost_vs_compiled_stack": compiled[name]["cost_ms_per_sample"] / s["cost_ms_per_sample"],
                      "modelled_compiled_cascade_vs_compiled_stack": modelled / s["cost_ms_per_sample"]}
    chosen = min(info, key=lambda n: (info[n]["modelled_compiled_cascade_vs_compiled_stack"], -info[n]["oof_accuracy"]))
    return chosen, info


def test_curve(cascade: Any, probas: list[np.ndarray], y: np.ndarray) -> dict[str, list]:
    """Test accuracy and modelled cost (the cascade's own cost model) at every Pareto threshold."""
    from slimstack.ensemble._cascade import _evaluate_grid, confidence_scores

    conf = confidence_scores(probas[0], cascade.confidence)[None, :]
    correct = np.stack([cascade.classes_[p.argmax(1)] == y for p in probas])
    grid = [np.unique(cascade.curve_["thresholds"][cascade.curve_["pareto"], 0])]
    cur = _evaluate_grid(conf, correct, cascade.costs_, grid, cascade.call_overhead_, cascade.cost_batch_)
    return {"threshold": cur["thresholds"][:, 0].tolist(), "accuracy": cur["accuracy"].tolist(),
            "cost_ms_per_sample": cur["cost"].tolist(), "share_first": cur["stage_share"][:, 0].tolist()}


def bench_cascade(dataset: str, args, rows: list, extra: dict) -> None:
    """Seed 0's split gives the table rows and the curves; ``--repeats`` adds more random splits.

    A 0.2-point accuracy difference is about one standard error of the paired difference on a
    4,000-row test set, so one split cannot settle the target; the mean over splits can.
    """
    runs = []
    repeats = max(1, args.repeats) if dataset in args.repeat_on.split(",") else 1
    for seed in range(repeats):
        t0 = time.perf_counter()
        runs.append(_cascade_split(dataset, args, seed))
        print(f"  cascade {dataset} split seed {seed}: {time.perf_counter() - t0:.0f}s", flush=True)
    split_rows, block = runs[0]
    rows.extend(split_rows)
    per_seed = {n: [r[1]["cascades"][n]["summary"] | {"seed": seed} for seed, r in enumerate(runs)]
                for n in block["cascades"]}
    summary = {}
    for n, items in per_seed.items():
        mean = {k: float(np.mean([i[k] for i in items])) for k in items[0] if k != "seed"}
        summary[n] = {"per_seed": items, "mean": mean, "splits": len(items),
                      "target_met_mean": {mode: bool(mean["accuracy_drop"] <= 0.002 + 1e-12 and mean[mode] <= 0.40)
                                          for mode in ("cost_vs_stack", "cost_vs_stack_one_call",
                                                       "cost_vs_stack_per_request", "cost_vs_compiled_stack")}}
    block["repeats"] = summary
    extra.setdefault("cascade", {})[dataset] = block


def _cascade_split(dataset: str, args, seed: int) -> tuple[list[dict], dict]:
    from sklearn.base import clone

    import slimstack as ss

    rows: list[dict] = []
    data, note = cascade_data(dataset, args.quick, seed)
    (X_tr, y_tr), (X_val, y_val), (X_te, y_te) = data["train"], data["val"], data["test"]
    stack_proto, stack_info = stacking(args.quick)
    protos = cheap_candidates()
    need = rows_needed()
    t0 = time.perf_counter()
    if len(y_val) >= need:  # enough held-out rows: stages fitted on train, thresholds tuned on validation
        X_tune, y_tune = X_val, y_val
        stack = clone(stack_proto).fit(X_tr, y_tr)
        fit_s = time.perf_counter() - t0
        cheap = {n: clone(e).fit(X_tr, y_tr) for n, e in protos.items()}
        cascades = {n: ss.Cascade([(n, cheap[n]), ("stack", stack)], prefit=True, max_accuracy_drop=0.002,
                                  n_threads=args.threads).fit(X_val, y_val) for n in cheap}
        tuning = {"mode": "validation", "rows": len(y_val), "stages_fitted_on": "train"}
    else:  # too few: cross-fit over train+validation (ss.Cascade's default), the stack's folds shared
        X_tune, y_tune = np.concatenate([X_tr, X_val]), np.concatenate([y_tr, y_val])
        cache = ss.OOFCache()
        cascades = {n: ss.Cascade([(n, e), ("stack", stack_proto)], cv=5, cache=cache, max_accuracy_drop=0.002,
                                  n_threads=args.threads).fit(X_tune, y_tune) for n, e in protos.items()}
        fit_s = time.perf_counter() - t0  # the stack's 5 fold fits and full fit, and every candidate's
        stack = next(iter(cascades.values())).stages_[-1][1]  # one fitted stack, shared by every cascade
        cheap = {n: c.stages_[0][1] for n, c in cascades.items()}
        tuning = {"mode": "cross-fit", "rows": len(y_tune), "folds": 5, "stages_fitted_on": "train+val"}
    tuning.update(rows_needed_without_gains=need, rule=(
        f"tune on the validation split when it has >= {need} rows (below that the risk rule lets a first "
        "stage answer only where it beats the stack), else on 5-fold out-of-fold predictions over train+val"))
    # the choice of first stage: compiled costs measured on tuning rows, shares from the tuning predictions
    compiled_alone = {n: ss.compile(m, threads=args.threads) for n, m in {"stack": stack, **cheap}.items()}
    py_cost = {n: c.costs_[0] for n, c in cascades.items()}
    chosen, cheap_info = choose_cheap(cascades, compiled_costs(compiled_alone, X_tune, args.threads), py_cost)
    variants = {"stack": stack, **cheap}
    variants.update({f"cascade_{n}": c for n, c in cascades.items()})
    # ss.compile: one ONNX Runtime graph each; the compiled cascade routes inside the graph (If node)
    compiled = {"compiled_stack": compiled_alone["stack"]}
    compiled.update({f"compiled_cascade_{n}": ss.compile(c, threads=args.threads) for n, c in cascades.items()})
    compile_diff = {k: float(np.abs(m.predict_proba(X_te) - (stack if k == "compiled_stack" else
                                                             cascades[k.removeprefix("compiled_cascade_")]
                                                             ).predict_proba(X_te)).max()) for k, m in compiled.items()}
    variants.update(compiled)
    rounds = 3 if args.quick else 7
    timing = timed_interleaved(variants, X_te, rounds=rounds, threads=args.threads)
    # one call over the whole test set: the expensive stage's per-call overhead is paid once
    whole = timed_interleaved(variants, X_te, rounds=rounds, threads=args.threads, batch=len(X_te))
    # one request at a time (online serving): every input pays each stage it reaches in full
    n_req = 100 if args.quick else 300
    per_request = timed_interleaved(variants, X_te[:n_req], rounds=3, threads=args.threads, batch=1)
    p_stack = stack.predict_proba(X_te)
    acc_stack = float((stack.classes_[p_stack.argmax(1)] == y_te).mean())
    base_cost = timing["stack"]["cost_ms_per_sample"]
    block: dict[str, Any] = {"data": note, "stacking": stack_info, "stack_fit_s": fit_s, "cheap_selection": cheap_info,
                             "cheap_chosen": chosen, "selection_rule": choose_cheap.__doc__.split("\n")[0],
                             "tuning": tuning, "cascades": {}}
    for name, model in {"stack": stack, **cheap}.items():
        acc = float((model.predict(X_te) == y_te).mean())
        rows.append({"name": f"{dataset}/{name}", "section": "cascade", "quality": acc, "quality_metric": "accuracy",
                     **timing[name], "size_bytes": size_bytes(model), "params": None,
                     "cost_vs_stack": timing[name]["cost_ms_per_sample"] / base_cost})
    for n, c in cascades.items():
        key = f"cascade_{n}"
        acc = float(c.score(X_te, y_te))
        share = np.bincount(c.answered_by(X_te), minlength=2) / len(y_te)
        ratio = timing[key]["cost_ms_per_sample"] / base_cost
        ratio_whole = whole[key]["cost_ms_per_sample"] / whole["stack"]["cost_ms_per_sample"]
        met = bool(acc >= acc_stack - 0.002 - 1e-12 and ratio <= 0.40)
        met_whole = bool(acc >= acc_stack - 0.002 - 1e-12 and ratio_whole <= 0.40)
        ratio_req = per_request[key]["cost_ms_per_sample"] / per_request["stack"]["cost_ms_per_sample"]
        met_req = bool(acc >= acc_stack - 0.002 - 1e-12 and ratio_req <= 0.40)
        rows.append({"name": f"{dataset}/cascade[{n}->stack]", "section": "cascade", "quality": acc,
                     "quality_metric": "accuracy", **timing[key], "size_bytes": size_bytes(c), "params": None,
                     "cost_vs_stack": ratio, "accuracy_drop_vs_stack": acc_stack - acc, "target_met": met,
                     "cost_vs_stack_one_call": ratio_whole, "target_met_one_call": met_whole,
                     "cost_vs_stack_per_request": ratio_req, "target_met_per_request": met_req,
                     "per_request_ms": per_request[key]["cost_ms_per_sample"],
                     "stack_per_request_ms": per_request["stack"]["cost_ms_per_sample"],
                     "chosen_by_rule": n == chosen, "threshold": float(c.thresholds_[0]),
                     "share_answered_first_stage": float(share[0])})
        probas = [cheap[n].predict_proba(X_te), p_stack]
        block["cascades"][n] = {
            "threshold": float(c.thresholds_[0]), "confidence": c.confidence,
            "fit_costs_ms_per_sample": c.costs_.tolist(), "fit_call_overhead_ms": c.call_overhead_.tolist(),
            "validation_modelled_cost_vs_stack": c.mean_cost_ / c.reference_cost_,
            "validation_accuracy": c.validation_accuracy_,
            "validation_reference_accuracy": c.reference_accuracy_, "validation_stage_share": c.stage_share_,
            "test_accuracy": acc, "test_stage_share": share.tolist(), "measured_cost_vs_stack": ratio,
            "measured_cost_vs_stack_one_call": ratio_whole, "measured_cost_vs_stack_per_request": ratio_req,
            "per_request_rows": n_req, "validation_drop_se": float(c.curve_["drop_se"][
                np.flatnonzero((c.curve_["thresholds"][:, 0] == c.thresholds_[0]))[0]]), "safety": c.safety,
            "target": "accuracy >= stack - 0.002 and cost <= 0.40 x stack", "target_met": met,
            "curve_validation": {"threshold": c.curve_["thresholds"][:, 0].tolist(),
                                 "accuracy": c.curve_["accuracy"].tolist(),
                                 "cost_ms_per_sample": c.curve_["cost"].tolist(),
                                 "pareto": c.curve_["pareto"].tolist()},
            "curve_test": test_curve(c, probas, y_te),
            "summary": {"accuracy_drop": acc_stack - acc, "cost_vs_stack": ratio, "cost_vs_stack_one_call": ratio_whole,
                        "cost_vs_stack_per_request": ratio_req, "threshold": float(c.thresholds_[0]),
                        "share_answered_first_stage": float(share[0]),
                        "tuning_share_first": float(c.stage_share_[n]), "chosen_by_rule": float(n == chosen)},
        }
    block["stack_test_accuracy"] = acc_stack
    c_base = timing["compiled_stack"]["cost_ms_per_sample"]
    for name, model in compiled.items():
        acc = float((model.predict(X_te) == y_te).mean())
        r = {"name": f"{dataset}/{name}", "section": "cascade", "quality": acc, "quality_metric": "accuracy",
             **timing[name], "size_bytes": size_bytes(model), "params": None,
             "cost_vs_stack": timing[name]["cost_ms_per_sample"] / base_cost,
             "cost_vs_compiled_stack": timing[name]["cost_ms_per_sample"] / c_base,
             "cost_vs_compiled_stack_per_request": per_request[name]["cost_ms_per_sample"]
             / per_request["compiled_stack"]["cost_ms_per_sample"],
             "per_request_ms": per_request[name]["cost_ms_per_sample"],
             "max_abs_proba_diff": compile_diff[name]}
        if name != "compiled_stack":  # the target, on compiled graphs: <= 40 % of the compiled stack
            block["cascades"][name.removeprefix("compiled_cascade_")]["summary"]["cost_vs_compiled_stack"] = \
                r["cost_vs_compiled_stack"]
            r["accuracy_drop_vs_stack"] = acc_stack - acc
            r["target_met_compiled"] = bool(acc >= acc_stack - 0.002 - 1e-12 and r["cost_vs_compiled_stack"] <= 0.40)
        rows.append(r)
    return rows, block


def plot_curves(extra: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    blocks = extra.get("cascade", {})
    fig, axes = plt.subplots(1, len(blocks), figsize=(6 * len(blocks), 4.5), squeeze=False)
    for ax, (dataset, block) in zip(axes[0], blocks.items()):
        for n, c in block["cascades"].items():
            stack_cost = c["fit_costs_ms_per_sample"][1]
            cur = c["curve_test"]
            ax.plot(np.array(cur["cost_ms_per_sample"]) / stack_cost, cur["accuracy"], ".-", label=f"{n} -> stack (test)")
            ax.scatter([c["measured_cost_vs_stack"]], [c["test_accuracy"]], marker="*", s=150, zorder=3,
                       label=f"{n}: chosen, measured")
        ax.axhline(block["stack_test_accuracy"], color="k", lw=0.8, label="stack alone")
        ax.axhline(block["stack_test_accuracy"] - 0.002, color="k", lw=0.8, ls="--", label="stack - 0.2 pt")
        ax.axvline(0.4, color="r", lw=0.8, ls=":", label="40% cost")
        ax.set(title=f"cascade on {dataset}", xlabel="mean cost / stack cost", ylabel="test accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- 2. hierarchical classifier ----------------------------------------------------------------
