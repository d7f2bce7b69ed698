import json
import subprocess
import sys

import pytest

from slimstack.recipe import run_recipe

RECIPE = """\
name: wine-ensemble
model:
  estimator: LogisticRegression
  params: {max_iter: 2000}
  scale: true
data:
  name: wine
measure: {runs: 3, warmup: 1}
steps:
  - ensemble:
      method: VotingEnsemble
      members:
        lr: current
        nb: {estimator: GaussianNB}
        tree: {estimator: DecisionTreeClassifier, params: {max_depth: 3, random_state: 0}}
      params: {voting: soft, weights: learn, cv: 3, random_state: 0}
  - cascade:
      stages:
        nb: {estimator: GaussianNB}
        ensemble: current
      params: {max_accuracy_drop: 0.02, random_state: 0}
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    (out / "r.yaml").write_text(RECIPE)
    report = run_recipe(out / "r.yaml", out / "out")
    return out, report


def test_run_writes_artifacts_and_reports(ran):
    out, report = ran
    o = out / "out"
    assert (o / "report.json").exists() and (o / "report.html").exists()
    names = [r["name"] for r in report["rows"]]
    assert names == ["original", "01-ensemble", "02-cascade"]
    for name in ("00-original", "01-ensemble", "02-cascade"):
        assert (o / "artifacts" / name / "slimstack.json").exists()
    assert all(r["quality"] > 0.85 for r in report["rows"])
    assert report["best"]["name"] in names
    weights = report["steps"][0]["record"]["fitted"]["weights_"]
    assert sum(weights) == pytest.approx(1.0)
    assert report["steps"][1]["record"]["stage_share"]
    assert not list(o.rglob(".*tmp*"))  # nothing half-written left behind
    html = (o / "report.html").read_text()
    assert "quality against latency" in html and 'id="measurements"' in html and "<svg" in html


def test_rerun_resumes_after_the_last_finished_step(ran, capsys):
    out, report = ran
    again = run_recipe(out / "r.yaml", out / "out")
    printed = capsys.readouterr().out
    assert "step 1 ensemble: done in a previous run" in printed and "step 2 cascade: done in a previous run" in printed
    assert [r["quality"] for r in again["rows"]] == [r["quality"] for r in report["rows"]]


def test_changed_step_reruns_from_there(ran, capsys):
    out, _ = ran
    changed = RECIPE.replace("max_accuracy_drop: 0.02", "max_accuracy_drop: 0.05")
    (out / "r2.yaml").write_text(changed)
    run_recipe(out / "r2.yaml", out / "out")
    printed = capsys.readouterr().out
    assert "step 1 ensemble: done in a previous run" in printed and "step 2 cascade (" in printed
    state = json.loads((out / "out" / "state.json").read_text())
    assert [s["index"] for s in state["steps"]] == [1, 2]


def test_cli_errors_exit_2_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.replace("GaussianNB}\n        tree", "GausianNB}\n        tree"))
    proc = subprocess.run([sys.executable, "-m", "slimstack.cli", "run", str(bad), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "GausianNB" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
