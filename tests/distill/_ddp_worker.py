"""One distillation run, for the DDP test: run it plainly or under ``torchrun --nproc_per_node=2``.

Usage: ``python _ddp_worker.py OUT_DIR``; rank 0 writes ``student.safetensors`` and ``result.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import slimstack as ss


def run(out_dir: Path) -> ss.DistillResult:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(192, 16)).astype(np.float32)
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    torch.manual_seed(1)
    student = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    cfg = ss.DistillConfig(epochs=2, batch_size=32, lr=1e-2, seed=0, progress=False, threads=1,
                           checkpoint_dir=str(out_dir / "ckpt"))
    # Unlabelled validation rows: rank 0 scores fidelity to the teacher and broadcasts it.
    return ss.distill(teacher, student, cfg, train=X, val=X[:48])


if __name__ == "__main__":
    from safetensors.torch import save_file

    out = Path(sys.argv[1])
    result = run(out)
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(out / "student.safetensors"))
        (out / "result.json").write_text(json.dumps({"history": result.history, "record": result.record}))
