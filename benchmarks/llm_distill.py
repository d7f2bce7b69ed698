"""Causal-LM distillation benchmark: SmolLM2-135M-Instruct into a layer-dropped student of itself.

The student is ``ss.zoo.shrink(teacher, layers=N)`` (an even spread of decoder layers, first and
last kept). It is distilled on the train split of the built-in text (``pytorch_readme``) with
forward KL at temperature T on the teacher's top-64 next tokens plus a tail bucket, the teacher's
top-k cached on disk once. Before and after, perplexity and the mean per-token KL(teacher ||
student) are measured on the held-out test split (never trained on), in the same token windows
for every model. Wall time is per phase (teacher caching, training); the machine is shared, so
times are indicative only.

    PYTHONPATH=src python benchmarks/llm_distill.py --quick
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, write  # noqa: E402

import slimstack as ss  # noqa: E402
from slimstack.datasets._text import token_windows  # noqa: E402
from slimstack.llm._measure import kld_top1  # noqa: E402

warnings.filterwarnings("ignore")


def quality(teacher, student, windows) -> dict[str, float]:
    kls, top1, nll, n = [], [], 0.0, 0
    for w in windows:
        _, ref = teacher.logprobs(w)
        _, lp = student.logprobs(w)
        kl, agree = kld_top1(ref, lp)
        kls.append(kl[:-1])
        top1.append(agree[:-1])
        nll -= float(lp[np.arange(len(w) - 1), w[1:]].sum())
        n += len(w) - 1
    return {"perplexity": float(np.exp(nll / n)), "kld": float(np.concatenate(kls).mean()),
            "top1_agreement": float(np.concatenate(top1).mean()), "tokens_scored": n}


def extra(p) -> None:
    p.add_argument("--layers", type=int, nargs="+", default=None, help="student decoder layers (default 20; full: 20 24)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 40 quick, 300 full)")


def main(argv=None) -> int:
    args = parse_args("llm_distill", __doc__.splitlines()[0], argv, extra)
    torch.set_num_threads(args.threads)
    layers = args.layers or ([20] if args.quick else [20, 24])
    steps = args.steps or (40 if args.quick else 300)
    window = 128
    teacher = ss.zoo.smollm2()
    train = ss.datasets.load("pytorch_readme", split="train", window=window)
    test = ss.datasets.load("pytorch_readme", split="test", window=window)
    eval_windows = token_windows(test, teacher, window=window, max_windows=4 if args.quick else None)
    cfg = dict(temperature=1.0, top_k=64, lr=1e-4, warmup=0.1, batch_size=4, epochs=100, max_steps=steps,
               max_length=window, grad_clip=1.0, progress=False, threads=args.threads, seed=0)
    rows = [{"name": "teacher (30 layers)", "layers": 30, **quality(teacher, teacher, eval_windows)}]
    with tempfile.TemporaryDirectory() as cache:
        for n in layers:
            student = ss.zoo.shrink(teacher, layers=n)
            before = quality(teacher, student, eval_windows)
            t0 = time.perf_counter()
            d = ss.distill(teacher, student, ss.DistillConfig(**cfg, cache_dir=cache), train=train)
            wall = time.perf_counter() - t0
            after = quality(teacher, d.model, eval_windows)
            rows.append({"name": f"shrink(layers={n})", "layers": n, "steps": d.record["steps"],
                         "train_tokens_per_step": cfg["batch_size"] * window, "train_windows": d.record["windows"],
                         "before": before, "after": after, "wall_s": round(wall, 1),
                         "teacher_s": d.record["teacher_seconds"], "train_s": d.record["train_seconds"],
                         "cache_hit": d.record["cache_hit"], "loss_first": d.history[0].get("loss"),
                         "loss_last": d.history[-1].get("loss")})
            print(rows[-1], flush=True)
    write("llm_distill", args, rows, config=cfg, eval_windows=len(eval_windows), window=window,
          note="timings on a shared 2-core machine (other engineers' tests ran alongside): indicative only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
