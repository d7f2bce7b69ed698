import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from slimstack.recipe import optimize_recipe

RECIPE = """\
name: iris-search
model:
  estimator: LogisticRegression
  params: {max_iter: 1000}
  scale: true
data: {name: iris}
tolerance: TOL
measure: {runs: 3, warmup: 1, batch_size: 64}
steps:
  - ensemble:
      method: VotingEnsemble
      members:
        nb: {estimator: GaussianNB}
        tree: {estimator: DecisionTreeClassifier, params: {max_depth: DEPTH, random_state: 0}}
      params: {cv: 3, random_state: 0}
search:
  trials: TRIALS
  seed: 0
  space:
    ensemble.method: {choices: [CHOICES]}
"""


def _write(path, tol=0.15, trials=3, depth=3, choices="none, VotingEnsemble, StackingEnsemble"):
    text = RECIPE.replace("TOL", str(tol)).replace("TRIALS", str(trials)).replace("DEPTH", str(depth))
    path.write_text(text.replace("CHOICES", choices))
    return path


def _complete(db):
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
        except sqlite3.OperationalError:  # polled while Optuna is still creating its schema
            return 0


def test_search_stores_trials_keeps_best_and_resumes(tmp_path):
    recipe = _write(tmp_path / "r.yaml", trials=2)
    out = tmp_path / "out"
    report = optimize_recipe(recipe, out)
    assert _complete(out / "study.db") == 2
    best = json.loads((out / "best.json").read_text())
    assert best["met_tolerance"] and (out / "best" / "slimstack.json").exists()
    assert report["best"]["name"] == best["trial"]
    assert (out / "report.html").exists() and len(report["rows"]) == 3  # original + 2 trials
    # asking for 3 in total runs exactly one more
    optimize_recipe(recipe, out, trials=3)
    assert _complete(out / "study.db") == 3


def test_single_techniques_are_tried_first(tmp_path):
    recipe = _write(tmp_path / "r.yaml", trials=2)
    report = optimize_recipe(recipe, tmp_path / "out")
    tried = [r["search_params"]["ensemble.method"] for r in report["rows"][1:]]
    assert tried == ["VotingEnsemble", "StackingEnsemble"]


def test_nothing_within_tolerance_still_saves_the_closest(tmp_path):
    recipe = _write(tmp_path / "r.yaml", tol=0.01, trials=2, depth=1, choices="VotingEnsemble, StackingEnsemble")
    # only a depth-1 tree as member: it can tell at most two of iris's three classes apart
    recipe.write_text(recipe.read_text().replace("nb: {estimator: GaussianNB}\n        ", ""))
    report = optimize_recipe(recipe, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    qualities = [r["quality"] for r in report["rows"][1:]]
    assert max(qualities) < 0.8 < report["rows"][0]["quality"]
    assert best["met_tolerance"] is False and best["quality"] == pytest.approx(max(qualities))
    assert report["best"]["met_tolerance"] is False
    assert "nothing met the tolerance" in (tmp_path / "out" / "report.html").read_text()
    assert (tmp_path / "out" / "best" / "slimstack.json").exists()


def test_sigkill_loses_no_finished_trial(tmp_path):
    recipe = _write(tmp_path / "r.yaml", trials=6, choices="VotingEnsemble, StackingEnsemble, EnsembleSelection")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "slimstack.cli", "optimize", str(recipe), "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (out / "study.db").exists() and _complete(out / "study.db") >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = _complete(out / "study.db")
    assert finished >= 2
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    assert _complete(out / "study.db") == 6  # the finished ones were kept, only the rest ran
    with sqlite3.connect(out / "study.db") as con:
        states = dict(con.execute("select state, count(*) from trials group by state").fetchall())
    assert states.get("RUNNING", 0) == 0
