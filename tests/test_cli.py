import json
import subprocess
import sys

import pytest

import slimstack as ss
from slimstack.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "measure" in out


def test_measure_a_saved_model(tmp_path, capsys, digits_mlp):
    ss.save(digits_mlp, tmp_path / "mlp")
    assert main(["measure", str(tmp_path / "mlp"), "--data", "digits", "--runs", "3", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["quality_metric"] == "accuracy" and d["quality"] > 0.9 and d["params"] == digits_mlp_params(digits_mlp)


def digits_mlp_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "argv, match",
    [
        (["measure", "nope", "--data", "digits"], "model path 'nope' does not exist"),
        (["measure", "{mlp}", "--data", "digitz"], "unknown dataset 'digitz'.*Did you mean 'digits'"),
    ],
)
def test_usage_errors_exit_2_without_traceback(tmp_path, argv, match, digits_mlp):
    import re

    ss.save(digits_mlp, tmp_path / "mlp")
    argv = [a.replace("{mlp}", str(tmp_path / "mlp")) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "slimstack.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and re.search(match, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) <= 2
    debug = subprocess.run([sys.executable, "-m", "slimstack.cli", "--debug", *argv], capture_output=True, text=True)
    assert "Traceback" in debug.stderr


def test_pickle_file_refused_on_the_command_line(tmp_path):
    import pickle

    (tmp_path / "m.pkl").write_bytes(pickle.dumps(1))
    proc = subprocess.run([sys.executable, "-m", "slimstack.cli", "measure", str(tmp_path / "m.pkl"), "--data", "iris"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "trusted" in proc.stderr


def test_demo_runs_every_example_and_prints_what_each_step_bought(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "slimstack.cli", "demo", "-o", str(tmp_path)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "what each step bought" in proc.stdout and "speedup" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    names = [sec["recipe"]["name"] for sec in report["sections"]]
    assert names == ["digits-cnn", "breast-cancer-ensemble", "minilm-stsb"]
    for sec in report["sections"]:
        base, *steps = sec["rows"]
        assert steps, sec["recipe"]["name"]
        # an intermediate step may cost quality (pruning before its distillation recovery); the end may not
        assert steps[-1]["quality"] >= 0.98 * base["quality"], sec["recipe"]["name"]
        assert sec["best"]["met_tolerance"], sec["recipe"]["name"]
    digits = report["sections"][0]["rows"]
    assert digits[-1]["size_ratio"] < 0.5 and digits[-1]["speedup"] > 1.0
    html = (tmp_path / "report.html").read_text()
    assert html.count("<section>") == 3


@pytest.mark.parametrize(
    "setup, argv, match",
    [
        (lambda d: (d / "r.yaml").write_bytes("name: t\n".encode("utf-16")),
         ["run", "{d}/r.yaml", "-o", "{d}/o"], r"UTF-16/UTF-32 encoded; save it as UTF-8"),
        (lambda d: ((d / "r.yaml").write_text("name: t\nmodel: {estimator: GaussianNB}\ndata: {name: iris}\n"
                                              "steps: [{quantize: {method: DynamicInt8}}]\n"),
                    (d / "o").mkdir(), (d / "o" / "state.json").write_text("{")),
         ["run", "{d}/r.yaml", "-o", "{d}/o"], r"state.json' is not a state file"),
    ],
)
def test_recipe_errors_exit_2_in_one_line_from_a_real_process(tmp_path, setup, argv, match):
    import re

    setup(tmp_path)
    argv = [a.replace("{d}", str(tmp_path)) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "slimstack.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert re.search(match, proc.stderr), proc.stderr
