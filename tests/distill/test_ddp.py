"""Two processes under torchrun (gloo) train the same student as one process, within tolerance."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ._ddp_worker import run

WORKER = Path(__file__).with_name("_ddp_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def test_two_process_ddp_matches_one_process(tmp_path):
    single = run(tmp_path / "single")
    assert single.record["world_size"] == 1

    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    out = tmp_path / "ddp"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER), str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((out / "result.json").read_text())
    assert ddp["record"]["world_size"] == 2
    assert ddp["record"]["steps"] == single.record["steps"] == 12  # same global batch: same number of steps

    weights = load_file(str(out / "student.safetensors"))
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(weights[name], value, atol=1e-5, rtol=1e-4)
    assert not torch.equal(weights["0.weight"], torch.zeros_like(weights["0.weight"]))
    assert len(ddp["history"]) == len(single.history) == 3  # epoch 0 (start) and two trained epochs
    for a, b in zip(ddp["history"], single.history):
        assert a["val"] == pytest.approx(b["val"], rel=1e-4)
        if a["epoch"]:
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert (out / "ckpt" / "checkpoint.pt").exists()
