"""LM pruning benchmark: SmolLM2-135M-Instruct dense vs Wanda 50 %, 2:4, magnitude 50 %, layer drop, FFN width.

Every variant is calibrated on the ``train`` split of the built-in text (``pytorch_readme``) and
scored on its ``test`` split, which no variant saw: perplexity over the test windows, KLD
(mean per-token KL(dense || variant)) and top-1 agreement with the dense model, and the size of
the folder ``ss.save`` writes (sparse variants store values plus a bitmask). No recovery training
unless ``--recovery-steps`` is given (then distillation from the dense model on the calibration
windows). Decode speed is not reported: this is a shared 2-core machine.

    PYTHONPATH=src python benchmarks/llm_prune.py --quick
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, write  # noqa: E402

import slimstack as ss  # noqa: E402
from slimstack.datasets import token_windows  # noqa: E402
from slimstack.llm._measure import kld_top1  # noqa: E402

warnings.filterwarnings("ignore")
WINDOW = 256


def variants(recovery_steps: int) -> dict[str, Any]:
    rec = {"recovery": "distill", "recovery_steps": recovery_steps} if recovery_steps else {}
    return {
        "dense": None,
        "Wanda 50 %": ss.WandaPruning(sparsity=0.5, **rec),
        "Wanda 2:4": ss.WandaPruning(nm=(2, 4), **rec),
        "magnitude 50 %": ss.MagnitudePruning(sparsity=0.5),
        "magnitude 2:4": ss.NMPruning(n=2, m=4),
        "layer drop 4 of 30 (cosine)": ss.LayerDrop(layers=4, **rec),
        "FFN width -25 %": ss.WidthPruning(ffn_ratio=0.25, refit=False, **rec),  # as measured (refit: llm_fast.py)
    }


def folder_bytes(model: Any) -> int:
    with tempfile.TemporaryDirectory() as d:
        out = ss.save(model, Path(d) / "m")
        return sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())


def score(lm: Any, ref_lps: list[np.ndarray], windows: list[np.ndarray]) -> dict[str, float]:
    nll, count, kls, top1 = 0.0, 0, [], []
    for w, ref in zip(windows, ref_lps, strict=True):
        _, lp = lm.logprobs(w, max_tokens=len(w))
        nll -= float(lp[np.arange(len(w) - 1), w[1:]].sum())
        count += len(w) - 1
        kl, agree = kld_top1(ref, lp)
        kls.append(kl)
        top1.append(agree)
    return {"perplexity": float(np.exp(nll / count)), "kld": float(np.concatenate(kls).mean()),
            "top1_agreement": float(np.concatenate(top1).mean()), "tokens_scored": count}


def main(argv=None) -> int:
    args = parse_args("llm_prune", __doc__.splitlines()[0], argv,
                      extra=lambda p: p.add_argument("--recovery-steps", type=int, default=0))
    torch.set_num_threads(args.threads)
    dense = ss.zoo.smollm2()
    calib = ss.datasets.load("pytorch_readme", split="train")
    test = ss.datasets.load("pytorch_readme", split="test")
    windows = token_windows(test, dense, window=WINDOW, max_windows=4 if args.quick else 16)
    ref_lps = [dense.logprobs(w, max_tokens=len(w))[1] for w in windows]
    n_calib = 16 if args.quick else 64
    meta = {"model": "SmolLM2-135M-Instruct (ss.zoo.smollm2(), float32)", "baseline": "dense",
            "data": f"pytorch_readme: calibration {n_calib} x {WINDOW} tokens of split 'train', scored on "
                    f"{len(windows)} x {WINDOW}-token windows of split 'test'"}
    rows = []
    for name, cfg in variants(args.recovery_steps).items():
        t0 = time.perf_counter()
        if cfg is None:
            model, summary = dense, {}
        else:
            cfg = cfg.replace(calibration_windows=n_calib) if hasattr(cfg, "calibration_windows") else cfg
            result = ss.prune(dense, cfg, calibration=calib)
            model, summary = result.model, result.summary
        prune_s = time.perf_counter() - t0
        row = {"name": name, "config": None if cfg is None else cfg.to_dict(),
               **score(model, ref_lps, windows), "size_bytes": folder_bytes(model),
               "params": sum(p.numel() for p in model.model.parameters()),
               "nonzero_params": sum(int(torch.count_nonzero(p)) for p in model.model.parameters()),
               "prune_seconds": round(prune_s, 1)}
        for key in ("sparsity_of_pruned_layers", "dropped_layers", "intermediate_size", "recovery"):
            if key in summary:
                row[key] = summary[key]
        rows.append(row)
        write("llm_prune", args, rows, complete=False, **meta)  # a partial run still leaves its rows
        print(f"{name:32s} ppl {row['perplexity']:8.2f}  kld {row['kld']:.4f}  top1 {row['top1_agreement']:.3f}  "
              f"size {row['size_bytes'] / 1e6:7.1f} MB  ({prune_s:.0f} s)", flush=True)
    write("llm_prune", args, rows, complete=True, **meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
