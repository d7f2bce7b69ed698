"""`slimstack run -o OUT`: only slimstack's own files are overwritten, OUT is locked, no stale report."""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from slimstack.cli import main
from slimstack.recipe import run_recipe

RECIPE = """\
name: iris-vote
model: {estimator: LogisticRegression, params: {max_iter: 500}, scale: true}
data: {name: iris}
measure: {runs: 1, warmup: 0}
steps:
  - ensemble:
      members: {lr: current, nb: {estimator: GaussianNB}}
      params: {voting: soft}
  - cascade:
      stages: {nb: {estimator: GaussianNB}, vote: current}
      params: {max_accuracy_drop: 0.02, random_state: 0}
"""


def _recipe(tmp_path, text=RECIPE, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _fails(capsys, argv, match):
    import re

    t0 = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert len(err.strip().splitlines()) == 1, err
    return time.perf_counter() - t0


@pytest.mark.parametrize("where", ["report.html", "report.json", "artifacts/00-original", "artifacts/notes.txt"])
def test_files_slimstack_did_not_write_are_refused_and_kept(tmp_path, capsys, where):
    out = tmp_path / "out"
    target = out / where
    target.parent.mkdir(parents=True)
    target.write_text("the user's own file")
    _fails(capsys, ["run", str(_recipe(tmp_path)), "-o", str(out)],
           rf"{where}' was not written by slimstack .*--force.*another -o folder")
    assert target.read_text() == "the user's own file"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted({where.split("/")[0]})


def test_o_naming_a_file_and_a_corrupt_state_are_one_line_errors(tmp_path, capsys):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    _fails(capsys, ["run", str(_recipe(tmp_path)), "-o", str(f)], r"is a file, not a folder")
    assert f.read_text() == "x"
    for payload in (b"{not json", b"\xff\xfe\x00\x00", b"[1, 2]", b'{"steps": [], "original": "x"}'):
        out = tmp_path / f"o{len(payload)}"
        out.mkdir()
        (out / "state.json").write_bytes(payload)
        _fails(capsys, ["run", str(_recipe(tmp_path)), "-o", str(out)],
               r"state.json' is not a state file of this slimstack version.*--force")
        assert (out / "state.json").read_bytes() == payload


def test_a_second_run_on_a_locked_out_fails_fast_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    # Another process holding OUT's lock the way a running `slimstack run` does (flock on .slimstack.lock);
    # plain Python so the test does not wait for a second torch import.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fh = open(sys.argv[1], 'a+'); fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
         "fh.write(f'pid {os.getpid()}, slimstack run'); fh.flush(); print('locked', flush=True); time.sleep(60)",
         str(out / ".slimstack.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        seconds = _fails(capsys, ["run", str(_recipe(tmp_path)), "-o", str(out)],
                         rf"is in use by another slimstack run \(pid {holder.pid}, slimstack run\); wait for it")
        assert seconds < 5
        assert not (out / "state.json").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    base = tmp_path_factory.mktemp("outdir")
    old = os.umask(0)  # the most permissive umask: modes must not depend on it
    try:
        run_recipe(_recipe(base), base / "out")
    finally:
        os.umask(old)
    return base


def test_output_folders_are_0700_and_reports_0600_whatever_the_umask(done):
    out = done / "out"
    for d in (out, out / "artifacts"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in ("report.json", "report.html", "state.json"):
        assert stat.S_IMODE((out / f).stat().st_mode) == 0o600, f
    state = json.loads((out / "state.json").read_text())
    assert {"report.json", "report.html", "artifacts/00-original", "artifacts/01-ensemble",
            "artifacts/02-cascade"} <= set(state["written"])


def test_a_killed_rerun_with_a_changed_recipe_leaves_no_stale_report(done, tmp_path, monkeypatch):
    import shutil

    from slimstack.recipe import _runner

    out = tmp_path / "out"
    shutil.copytree(done / "out", out)
    changed = _recipe(tmp_path, RECIPE.replace("voting: soft", "voting: hard").replace(
        "vote: current", "vote2: current"), "changed.yaml")
    calls = []

    def killed(kind, fields, model, ctx):  # the process dies inside the first changed step
        calls.append(kind)
        raise KeyboardInterrupt

    monkeypatch.setattr(_runner, "run_step", killed)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(changed, out)
    assert calls == ["ensemble"]
    assert not (out / "report.json").exists() and not (out / "report.html").exists()
    state = json.loads((out / "state.json").read_text())
    assert state["steps"] == []  # step 1 changed: it and everything after it are invalid
    on_disk = sorted(p.name for p in (out / "artifacts").iterdir())
    assert on_disk == ["00-original"], on_disk  # no artifact of the old recipe beside the new state


def test_rerun_overwrites_only_its_own_files_and_force_replaces_strangers(done, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(done / "out", out)
    (out / "notes.txt").write_text("mine")
    (out / "artifacts" / ".02-cascade.tmp-123-abcd").mkdir()  # what a save killed half-way leaves
    recipe = _recipe(tmp_path)
    assert main(["run", str(recipe), "-o", str(out)]) == 0  # a rerun replaces its own report
    assert "done in a previous run" in capsys.readouterr().out
    state = json.loads((out / "state.json").read_text())
    state["written"].remove("report.html")  # as if the user had put a report.html there themselves
    (out / "state.json").write_text(json.dumps(state))
    (out / "report.html").write_text("a report the user wrote by hand")
    _fails(capsys, ["run", str(recipe), "-o", str(out)], r"report.html' was not written by slimstack")
    assert (out / "report.html").read_text() == "a report the user wrote by hand"
    assert main(["run", str(recipe), "-o", str(out), "--force"]) == 0
    assert "<svg" in (out / "report.html").read_text()
    assert (out / "notes.txt").read_text() == "mine"  # never touched, even with --force
    assert "report.html" in json.loads((out / "state.json").read_text())["written"]


def test_a_run_leaves_the_callers_random_streams_alone(done, tmp_path):
    import random
    import shutil

    import numpy as np
    import torch

    shutil.copytree(done / "out", tmp_path / "out")
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    run_recipe(_recipe(tmp_path), tmp_path / "out")  # seeds the globals for its own determinism
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
