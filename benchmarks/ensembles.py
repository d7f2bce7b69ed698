"""Ensembles against scikit-learn and mlxtend on identical folds: quality, fit/predict time, fits.

For every dataset and every outer fold of a repeated stratified CV, all tools get the same outer
train/test rows and the same inner ``StratifiedKFold(5, shuffle=True, random_state=0)``:

* ``sk_voting``      scikit-learn ``VotingClassifier(voting="soft")``
* ``sk_stacking``    scikit-learn ``StackingClassifier(cv=inner)`` with its default meta-model
                     ``LogisticRegression`` (C=1)
* ``sk_stacking_lrcv`` the same with slimstack's default meta-model (C tuned by log loss), to show
                     how much of the difference the meta-model makes
* ``mlxtend_stack``  mlxtend ``StackingCVClassifier(cv=inner, use_probas=True)``
* ``ss_voting``      ``ss.VotingEnsemble`` soft, equal weights
* ``ss_voting_learn`` learned weights on out-of-fold log loss (its own fresh ``OOFCache``)
* ``ss_selection``   ``ss.EnsembleSelection`` sharing ``ss_voting_learn``'s cache (0 new fits)
* ``ss_stacking``    ``ss.StackingEnsemble`` with its defaults (fold models averaged, K x cv fits;
                     meta-model ``LogisticRegressionCV`` choosing C by log loss), own fresh cache
* ``ss_stacking_refit`` the same with ``refit=True`` (K x (cv + 1) fits, like scikit-learn)
* ``ss_stacking_auto`` the same with ``refit="auto"`` (fold models kept; the members whose full fit
  is cheap by their measured fold fits are also fitted on all rows); the five stacking tools are
  timed interleaved, their order rotating between folds
* ``member:<name>``  each member as fitted inside ``sk_voting`` (no extra fits)

Fits are counted by wrapping every member in a counter that appends one byte to a file per
``fit`` (works across joblib worker processes). Run: ``python benchmarks/ensembles.py --quick``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import warnings

import numpy as np

# OpenMP threads that spin while waiting make HistGradientBoosting crawl on a shared machine (as hierarchical.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import parse_args, size_bytes, timed, write  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin, clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss  # noqa: E402
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402
from sklearn.utils.metaestimators import available_if  # noqa: E402

import slimstack as ss  # noqa: E402
from slimstack._utils import threads  # noqa: E402


class Counted(ClassifierMixin, BaseEstimator):
    """Delegates to ``estimator``; each ``fit`` appends one byte to ``log`` (a fit counter)."""

    def __init__(self, estimator=None, log=None):
        self.estimator = estimator
        self.log = log

    def fit(self, X, y):
        with open(self.log, "ab") as fh:
            fh.write(b".")
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    @available_if(lambda self: hasattr(self.estimator, "predict_proba"))
    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        return self.estimator_.predict(X)


def members(log: str) -> list[tuple[str, Counted]]:
    base = [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
        ("rf", RandomForestClassifier(n_estimators=200, n_jobs=1, random_state=0)),
        ("hgb", HistGradientBoostingClassifier(random_state=0)),
        ("knn", KNeighborsClassifier(n_neighbors=15)),
        ("svc", SVC(probability=True, random_state=0)),
    ]
    return [(n, Counted(e, log)) for n, e in base]


def datasets(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    out = {}
    for name, loader in (("digits", load_digits), ("breast_cancer", load_breast_cancer), ("wine", load_wine)):
        X, y = loader(return_X_y=True)
        out[name] = (X.astype(float), y, "full")
    X, y = make_classification(n_samples=20000, n_features=40, n_informative=15, n_classes=3, flip_y=0.05,
                               random_state=0)
    note = "full 20000 rows"
    if quick:  # SVC(probability=True) is quadratic in rows: the quick run takes a stratified subsample
        idx = next(StratifiedKFold(10, shuffle=True, random_state=0).split(X, y))[1]
        X, y, note = X[idx], y[idx], f"stratified subsample of {len(idx)} of 20000 rows (--quick)"
    out["synthetic_20k"] = (X, y, note)
    return out


def meta() -> LogisticRegression:
    """scikit-learn's and mlxtend's meta-model: LogisticRegression with C fixed at 1."""
    return LogisticRegression(max_iter=1000)


def ss_meta():
    """slimstack's default meta-model, given to scikit-learn in ``sk_stacking_lrcv``."""
    from sklearn.linear_model import LogisticRegressionCV

    return LogisticRegressionCV(Cs=10, cv=StratifiedKFold(5), scoring="neg_log_loss", max_iter=2000)


def brier(y, P, classes) -> float:
    onehot = (y[:, None] == classes[None, :]).astype(float)
    return float(np.mean(np.sum((P - onehot) ** 2, axis=1)))


def count(log: str) -> int:
    return os.path.getsize(log) if os.path.exists(log) else 0


def run_tool(name, make, Xtr, ytr, Xte, yte, log):
    before = count(log)
    est = make()
    t0 = time.perf_counter()
    est.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    fits = count(log) - before
    t0 = time.perf_counter()
    P = est.predict_proba(Xte)
    pred_s = time.perf_counter() - t0
    classes = np.unique(ytr)
    row = {"tool": name, "accuracy": accuracy_score(yte, classes[np.argmax(P, axis=1)]),
           "log_loss": log_loss(yte, P, labels=classes), "brier": brier(yte, P, classes),
           "fit_s": fit_s, "predict_s": pred_s, "n_fits": fits}
    if hasattr(est, "refit_members_"):
        row["refit_members"] = list(est.refit_members_)
    return est, row


def _extra(p):
    p.add_argument("--folds", type=int, default=None,
                   help="with --quick: outer folds per dataset (default 1, and 2 on breast_cancer and wine; at most 3)")
    p.add_argument("--latency-only", action="store_true",
                   help="only the serving latency of compiled ensembles (writes ensembles-latency[-quick].json)")
    p.add_argument("--datasets", default=None, help="comma-separated subset of the datasets (latency run)")
    p.add_argument("--latency-threads", default="1",
                   help="latency run: comma-separated thread counts, each applied to every variant alike (default 1; "
                        "2 only on an idle machine: oversubscribed OpenMP makes scikit-learn's times meaningless)")


def latency(quick: bool, only: set | None, thread_counts: tuple[int, ...] = (1,)) -> list[dict]:
    """Predict latency at batch 1 and 256: compiled vs Python vs scikit-learn's ensembles, interleaved.

    Per dataset, the five members are fitted once (first outer fold's training rows) inside each
    tool; every variant then predicts the same rows in rotation (A B C ... B C A ...), and the median
    per variant is kept (``_common.timed``: ss.compare with a cool-down between calls). Each thread
    count in ``thread_counts`` is applied to every variant alike (ONNX Runtime intra-op threads for
    the compiled ones, BLAS/OpenMP for scikit-learn's). Sizes are what ss.save writes.
    ``max_abs_proba_diff`` compares each compiled model with its Python source.

    Stacking variants: ``sk_stacking`` (scikit-learn, members refitted on all rows), ``ss_stacking``
    (slimstack's default: the five fold copies of every member averaged) and ``ss_stacking_refit``
    (slimstack, ``refit=True``: one copy of each member, as scikit-learn serves).
    """
    rows = []
    inner = StratifiedKFold(5, shuffle=True, random_state=0)
    log = os.path.join(tempfile.mkdtemp(prefix="ss-bench-lat-"), "fits.log")
    for dname, (X, y, _) in datasets(quick).items():
        if only and dname not in only:
            continue
        tr, te = next(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
        m = [(n, e.estimator) for n, e in members(log)]
        python = {
            "sk_stacking": StackingClassifier(m, final_estimator=meta(), cv=inner, n_jobs=2).fit(X[tr], y[tr]),
            "ss_stacking": ss.StackingEnsemble(m, cv=inner, n_jobs=2, random_state=0).fit(X[tr], y[tr]),
            "ss_stacking_refit": ss.StackingEnsemble(m, cv=inner, n_jobs=2, refit=True, random_state=0).fit(X[tr], y[tr]),
            "sk_voting": VotingClassifier(m, voting="soft", n_jobs=1).fit(X[tr], y[tr]),
            "ss_voting": ss.VotingEnsemble(m).fit(X[tr], y[tr]),
        }
        variants = dict(python)
        diffs, sizes = {}, {}
        for name, est in python.items():
            t0 = time.perf_counter()
            variants[f"compiled:{name}"] = fast = ss.compile(est, threads=1)
            diffs[f"compiled:{name}"] = (float(np.abs(fast.predict_proba(X[te]) - est.predict_proba(X[te])).max()),
                                         time.perf_counter() - t0)
        sizes = {n: size_bytes(v) for n, v in variants.items()}
        acc = {n: float(np.mean(np.asarray(v.classes_)[np.argmax(v.predict_proba(X[te]), 1)] == y[te]))
               for n, v in variants.items()}
        Xte = np.tile(X[te], (max(1, 256 // len(te) + 1), 1))[:256]
        for th in thread_counts:
            for batch, reps in ((1, 30 if quick else 100), (256, 10 if quick else 30)):
                t = timed(variants, Xte, batch=batch, threads=th, runs=reps)
                for n in variants:
                    d = diffs.get(n)
                    rows.append({"name": f"{dname}/{n}/b{batch}" + ("" if th == 1 else f"/t{th}"), "dataset": dname,
                                 "tool": n, "batch": batch, "threads": th, "latency_ms": t[n]["latency_ms"],
                                 "quality": acc[n], "quality_metric": "accuracy", "size_bytes": sizes.get(n),
                                 "params": None, "max_abs_proba_diff": None if d is None else d[0],
                                 "compile_s": None if d is None else d[1]})
                print(dname, f"threads={th}", batch, {n: round(v["latency_ms"], 3) for n, v in t.items()}, flush=True)
    return rows


def demo_latency(quick: bool) -> tuple[list[dict], list[float]]:
    """The demo recipe's ensemble (recipe/examples/breast_cancer_ensemble.yaml) against its logistic regression.

    Scaled LR, RandomForest(100) and HistGradientBoosting by learned-weight soft voting (cv=5), and
    the recipe's cascade (scaled LR first); Python and compiled, at batch 1 and 256, interleaved.
    Target (issue #16): the compiled ensemble costs <= 5x the logistic regression.
    """
    train, test = (ss.datasets.load("breast_cancer", split=s, seed=0) for s in ("train", "test"))
    lr = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))  # noqa: E731
    base = lr().fit(train.X, train.y)
    vote = ss.VotingEnsemble([("lr", lr()), ("rf", RandomForestClassifier(n_estimators=100, random_state=0)),
                              ("hgb", HistGradientBoostingClassifier(random_state=0))],
                             voting="soft", weights="learn", cv=5, random_state=0).fit(train.X, train.y)
    # learned weights may leave members at 0 (then not evaluated); equal weights evaluate all three
    equal = ss.VotingEnsemble([("lr", lr()), ("rf", RandomForestClassifier(n_estimators=100, random_state=0)),
                               ("hgb", HistGradientBoostingClassifier(random_state=0))], voting="soft").fit(train.X, train.y)
    cascade = ss.Cascade([("lr", lr()), ("ensemble", vote)], max_accuracy_drop=0.005, random_state=0)
    cascade.fit(train.X, train.y)
    python = {"lr": base, "voting": vote, "voting_equal": equal, "cascade": cascade}
    variants = dict(python)
    diffs = {}
    for name in ("voting", "voting_equal", "cascade"):
        variants[f"compiled:{name}"] = fast = ss.compile(python[name], threads=1)
        diffs[f"compiled:{name}"] = float(np.abs(fast.predict_proba(test.X) - python[name].predict_proba(test.X)).max())
    X = np.tile(test.X, (max(1, 256 // len(test.X) + 1), 1))[:256]
    rows = []
    for batch, reps in ((1, 30 if quick else 100), (256, 20 if quick else 50)):
        t = timed(variants, X, batch=batch, threads=1, runs=reps)
        for n, v in variants.items():
            acc = float(np.mean(np.asarray(v.classes_)[np.argmax(v.predict_proba(test.X), 1)] == test.y))
            rows.append({"name": f"demo_breast_cancer/{n}/b{batch}", "dataset": "demo_breast_cancer", "tool": n,
                         "batch": batch, "latency_ms": t[n]["latency_ms"], "quality": acc, "quality_metric": "accuracy",
                         "size_bytes": size_bytes(v), "params": None, "max_abs_proba_diff": diffs.get(n),
                         "cost_vs_lr": t[n]["latency_ms"] / t["lr"]["latency_ms"]})
        print("demo", batch, {n: round(v["latency_ms"], 3) for n, v in t.items()}, flush=True)
    return rows, [float(w) for w in vote.weights_]


def demo_targets(rows: list[dict], weights: list[float]) -> dict:
    get = {(r["tool"], r["batch"]): r for r in rows}
    out = {f"compiled_voting_cost_vs_lr_b{b}": get[("compiled:voting", b)]["cost_vs_lr"] for b in (1, 256)}
    out.update({f"compiled_voting_equal_cost_vs_lr_b{b}": get[("compiled:voting_equal", b)]["cost_vs_lr"] for b in (1, 256)})
    out.update({f"compiled_cascade_cost_vs_lr_b{b}": get[("compiled:cascade", b)]["cost_vs_lr"] for b in (1, 256)})
    out["learned_weights"] = weights
    out["compiled_voting_le_5x_lr_b256"] = out["compiled_voting_cost_vs_lr_b256"] <= 5
    out["compiled_voting_le_5x_lr_b1"] = out["compiled_voting_cost_vs_lr_b1"] <= 5
    return out


STACKS = {"fold_averaged": "compiled:ss_stacking", "refit": "compiled:ss_stacking_refit",
          "sklearn_refit": "compiled:sk_stacking"}


def latency_targets(rows: list[dict]) -> dict:
    """Per dataset and thread count: each compiled stack's speed-up over ``StackingClassifier`` (targets 10x / 5x)."""
    out = {}
    for dname in sorted({r["dataset"] for r in rows} - {"demo_breast_cancer"}):
        out[dname] = {"max_abs_proba_diff": max(r["max_abs_proba_diff"] for r in rows
                                                if r["dataset"] == dname and r["max_abs_proba_diff"] is not None)}
        for th in sorted({r.get("threads", 1) for r in rows if r["dataset"] == dname}):
            get = {(r["tool"], r["batch"]): r["latency_ms"] for r in rows
                   if r["dataset"] == dname and r.get("threads", 1) == th}
            t = {}
            for kind, tool in STACKS.items():
                if (tool, 1) not in get:
                    continue
                for b in (1, 256):
                    t[f"{kind}_speedup_b{b}"] = get[("sk_stacking", b)] / get[(tool, b)]
                t[f"{kind}_10x_at_1"] = t[f"{kind}_speedup_b1"] >= 10
                t[f"{kind}_5x_at_256"] = t[f"{kind}_speedup_b256"] >= 5
            out[dname][f"threads_{th}"] = t
    return out


def main() -> None:
    args = parse_args("ensembles", __doc__.splitlines()[0], extra=_extra)
    if args.latency_only:
        warnings.filterwarnings("ignore", category=FutureWarning)
        if args.out == Path(__file__).resolve().parent / "results" / f"ensembles{'-quick' if args.quick else ''}.json":
            args.out = args.out.with_name(f"ensembles-latency{'-quick' if args.quick else ''}.json")
        only = set(args.datasets.split(",")) if args.datasets else None
        counts = tuple(int(t) for t in args.latency_threads.split(","))
        args.threads = counts[0]  # "machine" records the first; every row records its own
        with threads(1):  # fits single-threaded; timed() sets each variant's threads per row's count
            rows = latency(args.quick, only, counts)
            demo, weights = ([], None) if only and "demo" not in only else demo_latency(args.quick)
        write("ensembles-latency", args, rows + demo, targets=latency_targets(rows),
              demo_targets=demo_targets(demo, weights) if demo else None,
              protocol={"threads": list(counts), "interleaved": "every variant in rotation, median per variant",
                        "train": "first of StratifiedKFold(3, shuffle, seed 0) outer folds; members as in the main run",
                        "datasets": sorted({r["dataset"] for r in rows})})
        return
    # SVC(probability=True) is what the issue specifies; scikit-learn 1.9 deprecates the flag.
    warnings.filterwarnings("ignore", message=".*probability.*parameter was deprecated", category=FutureWarning)
    os.environ["PYTHONWARNINGS"] = "ignore::FutureWarning"  # the same inside joblib workers
    quick = args.quick
    n_splits, n_repeats = (3, 1) if quick else (5, 2)
    # quick: the first outer fold (two on the small sets) of each dataset
    max_folds = {"breast_cancer": 2, "wine": 2} if quick else {}
    if quick and args.folds:
        max_folds = {d: args.folds for d in ("digits", "breast_cancer", "wine", "synthetic_20k")}
    run_i = 0  # rotates the order of the interleaved stacking tools across all runs
    inner = StratifiedKFold(5, shuffle=True, random_state=0)
    tmp = tempfile.mkdtemp(prefix="ss-bench-ens-")
    log = os.path.join(tmp, "fits.log")
    per_fold: list[dict] = []
    notes = {}
    # n_jobs=2 worker processes each get 1 BLAS/OpenMP thread (loky's default for 2 jobs on 2 cores); the
    # main process, where mlxtend refits its members, gets 1 too, so no tool oversubscribes the 2 cores.
    with threads(1):
        for dname, (X, y, note) in datasets(quick).items():
            notes[dname] = note
            outer = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=0)
            for f, (tr, te) in enumerate(outer.split(X, y)):
                if quick and f >= max_folds.get(dname, 1):
                    break
                Xtr, ytr, Xte, yte = X[tr], y[tr], X[te], y[te]
                m = members(log)
                tools = {
                    "sk_voting": lambda: VotingClassifier(m, voting="soft", n_jobs=2),
                    "ss_voting": lambda: ss.VotingEnsemble(m, n_jobs=2),
                    "mlxtend_stack": lambda: _mlxtend(m, inner),
                }
                cache = ss.OOFCache()
                stack_pair = {
                    "sk_stacking": lambda: StackingClassifier(m, final_estimator=meta(), cv=inner, n_jobs=2),
                    "sk_stacking_lrcv": lambda: StackingClassifier(m, final_estimator=ss_meta(), cv=inner, n_jobs=2),
                    "ss_stacking": lambda: ss.StackingEnsemble(m, cv=inner, n_jobs=2, random_state=0),
                    "ss_stacking_refit": lambda: ss.StackingEnsemble(m, cv=inner, n_jobs=2, refit=True,
                                                                     random_state=0),
                    "ss_stacking_auto": lambda: ss.StackingEnsemble(m, cv=inner, n_jobs=2, refit="auto",
                                                                    random_state=0),
                }
                names = list(stack_pair)
                order = names[run_i % len(names):] + names[:run_i % len(names)]
                run_i += 1
                rows = []
                for name in order:  # interleaved: the three stacking variants rotate their order per fold
                    rows.append(run_tool(name, stack_pair[name], Xtr, ytr, Xte, yte, log)[1])
                for name, make in tools.items():
                    est, row = run_tool(name, make, Xtr, ytr, Xte, yte, log)
                    rows.append(row)
                    if name == "sk_voting":
                        for (mname, _), fitted in zip(m, est.estimators_):
                            P = fitted.predict_proba(Xte)
                            cl = np.unique(ytr)
                            rows.append({"tool": f"member:{mname}", "accuracy": accuracy_score(yte, cl[np.argmax(P, 1)]),
                                         "log_loss": log_loss(yte, P, labels=cl), "brier": brier(yte, P, cl),
                                         "fit_s": None, "predict_s": None, "n_fits": 1})
                _, row = run_tool("ss_voting_learn", lambda: ss.VotingEnsemble(m, weights="learn", cv=inner, n_jobs=2,
                                                                             random_state=0, cache=cache),
                                  Xtr, ytr, Xte, yte, log)
                rows.append(row)
                sel, row = run_tool("ss_selection", lambda: ss.EnsembleSelection(m, cv=inner, n_jobs=2, random_state=0,
                                                                               cache=cache), Xtr, ytr, Xte, yte, log)
                row["shared_cache"] = True
                rows.append(row)
                for r in rows:
                    r.update(dataset=dname, fold=f)
                per_fold.extend(rows)
                print(dname, f, {r["tool"]: (round(r["log_loss"], 4), None if r["fit_s"] is None else round(r["fit_s"], 2),
                                             r["n_fits"]) for r in rows}, flush=True)
    write("ensembles", args, summarise(per_fold), per_fold=per_fold, datasets=notes,
          protocol={"outer": f"RepeatedStratifiedKFold(n_splits={n_splits}, n_repeats={n_repeats}, random_state=0)"
                             + ((f" (--quick --folds {args.folds}: the first {args.folds} outer folds of every dataset)"
                                 if args.folds else " (--quick: first fold; first two on breast_cancer and wine)")
                                if quick else ""),
                    "outer_folds_used": {d: len({r["fold"] for r in per_fold if r["dataset"] == d}) for d in notes},
                    "inner": "StratifiedKFold(5, shuffle=True, random_state=0) for every stacking/OOF tool",
                    "n_jobs": 2, "threads_per_process": 1, "interleaved": "sk_stacking, sk_stacking_lrcv, ss_stacking, ss_stacking_refit and ss_stacking_auto rotate "
                                   "order per fold",
                    "meta_models": "sk_stacking and mlxtend: LogisticRegression(max_iter=1000) (C=1); ss_stacking, "
                                   "ss_stacking_refit and sk_stacking_lrcv: LogisticRegressionCV(Cs=10, "
                                   "scoring='neg_log_loss')"},
          targets=targets(per_fold))


def _mlxtend(m, inner):
    from mlxtend.classifier import StackingCVClassifier

    return StackingCVClassifier([e for _, e in m], meta_classifier=meta(), cv=inner,
                                use_probas=True, n_jobs=2, random_state=0)


def summarise(per_fold: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["dataset"], r["tool"]) for r in per_fold}, key=lambda k: (k[0], k[1]))
    for dname, tool in keys:
        rs = [r for r in per_fold if r["dataset"] == dname and r["tool"] == tool]
        med = lambda k: None if rs[0][k] is None else float(np.median([r[k] for r in rs]))  # noqa: E731
        rows.append({"name": f"{dname}/{tool}", "dataset": dname, "tool": tool, "quality": float(np.mean([r["accuracy"] for r in rs])),
                     "quality_metric": "accuracy", "log_loss": float(np.mean([r["log_loss"] for r in rs])),
                     "brier": float(np.mean([r["brier"] for r in rs])), "fit_s": med("fit_s"),
                     "latency_ms": None if med("predict_s") is None else 1000 * med("predict_s"),
                     "n_fits": int(np.median([r["n_fits"] for r in rs])), "size_bytes": None, "params": None,
                     "folds": len(rs)})
    return rows


def targets(per_fold: list[dict]) -> dict:
    out = {}
    for dname in sorted({r["dataset"] for r in per_fold}):
        get = lambda tool, k: [r[k] for r in per_fold if r["dataset"] == dname and r["tool"] == tool]  # noqa: E731
        ll = {t: float(np.mean(get(t, "log_loss"))) for t in ("ss_stacking", "sk_stacking", "ss_voting",
                                                             "ss_voting_learn", "ss_selection")}
        best_member = min(float(np.mean(get(f"member:{n}", "log_loss"))) for n in ("lr", "rf", "hgb", "knn", "svc"))
        ratios = [a / b for a, b in zip(get("ss_stacking", "fit_s"), get("sk_stacking", "fit_s"))]
        ratios_refit = [a / b for a, b in zip(get("ss_stacking_refit", "fit_s"), get("sk_stacking", "fit_s"))]
        ll_refit = float(np.mean(get("ss_stacking_refit", "log_loss")))
        ll_auto = float(np.mean(get("ss_stacking_auto", "log_loss")))
        ratios_auto = [a / b for a, b in zip(get("ss_stacking_auto", "fit_s"), get("sk_stacking", "fit_s"))]
        ll_sk_lrcv = float(np.mean(get("sk_stacking_lrcv", "log_loss"))) if get("sk_stacking_lrcv", "log_loss") else None
        out[dname] = {
            "stacking_log_loss_le_sklearn": ll["ss_stacking"] <= ll["sk_stacking"],
            "stacking_log_loss": ll["ss_stacking"], "sklearn_stacking_log_loss": ll["sk_stacking"],
            "stacking_fit_time_ratio_median": float(np.median(ratios)),
            "stacking_fit_time_le_5_6": float(np.median(ratios)) <= 5 / 6,
            "refit_stacking_log_loss": ll_refit, "refit_stacking_log_loss_le_sklearn": ll_refit <= ll["sk_stacking"] + 1e-12,
            "refit_stacking_fit_time_ratio_median": float(np.median(ratios_refit)),
            "sklearn_stacking_same_meta_log_loss": ll_sk_lrcv,
            "auto_stacking_log_loss": ll_auto, "auto_stacking_log_loss_le_sklearn": ll_auto <= ll["sk_stacking"],
            "auto_stacking_fit_time_ratio_median": float(np.median(ratios_auto)),
            "auto_stacking_fit_time_le_5_6": float(np.median(ratios_auto)) <= 5 / 6,
            "auto_refit_members": sorted({m for r in per_fold if r["dataset"] == dname
                                          and r["tool"] == "ss_stacking_auto" for m in r.get("refit_members", [])}),
            "voting_learn_beats_soft": ll["ss_voting_learn"] < ll["ss_voting"],
            "selection_beats_soft": ll["ss_selection"] < ll["ss_voting"],
            "soft_voting_log_loss": ll["ss_voting"], "voting_learn_log_loss": ll["ss_voting_learn"],
            "selection_log_loss": ll["ss_selection"], "best_member_log_loss": best_member,
        }
    return out


if __name__ == "__main__":
    main()
