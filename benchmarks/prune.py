"""Pruning benchmark: does the pruned model get smaller and faster, and at what quality?

* Digits CNN and a residual CNN: structured pruning (Torch-Pruning, L2 and random importance) at
  several ratios with a short fine-tune, against the dense model and against
  ``torch.nn.utils.prune.ln_structured`` at the same channel sparsity (masks: no speed-up).
  Accuracy, MACs, parameters, file size, latency at batch 1 and 256, and the ratio of latency
  gain to MAC reduction (Torch-Pruning's own ResNet table: 1.35x latency for 2.04x MACs = 0.66).
* Unstructured magnitude 80% and 2:4 on the CNN: file size against dense, and quality.
* all-MiniLM-L6-v2: 50% of FFN neurons and 25% of heads removed by Taylor importance, recovered by
  distilling the unpruned model's embeddings on STS-B train sentences; STS-B dev Spearman and latency.

Every variant of a group is timed interleaved in one process (``ss.compare``) at ``--threads`` (default 2).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path

# OpenMP threads spin while they wait at barriers by default; on a shared, oversubscribed machine the
# spinning threads steal the cores the others need and 2-thread timings turn into contention noise
# (measured here: dense CNN 327 ms per batch spinning, 21 ms passive). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
from _common import parse_args, write  # noqa: E402

import slimstack as ss  # noqa: E402
from slimstack._utils import threads  # noqa: E402
from slimstack.prune._recovery import _train_classifier  # noqa: E402


def torch_prune_masks(model: torch.nn.Module, ratio: float, data, epochs: int) -> torch.nn.Module:
    """torch.nn.utils.prune at the same channel sparsity: masks on every conv/hidden linear, fine-tuned, made permanent."""
    from torch.nn.utils import prune as tprune

    out = copy.deepcopy(model)
    layers = [m for m in out.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)][:-1]  # not the classifier
    for m in layers:
        tprune.ln_structured(m, "weight", amount=ratio, n=2, dim=0)
    _train_classifier(out, None, data, epochs, 3e-3, 0, None)
    for m in layers:
        tprune.remove(m, "weight")
    return out.eval()


def rows_from(c_big, c_one, meta: dict[str, dict], base: str) -> list[dict]:
    rows = []
    b = c_big.measurements[base]
    for name, m in c_big.measurements.items():
        one = c_one.measurements[name]
        speed = b.latency_ms / m.latency_ms
        speed1 = c_one.measurements[base].latency_ms / one.latency_ms
        mac_red = (b.macs / m.macs) if (b.macs and m.macs) else None
        rows.append({"name": name, **meta[name], "quality": m.quality, "quality_metric": m.quality_metric,
                     "latency_ms": m.latency_ms, "latency_b1_ms": one.latency_ms, "batch_size": m.batch_size,
                     "size_bytes": m.size_bytes, "params": m.params, "nonzero_params": m.nonzero_params,
                     "macs": m.macs, "speedup": round(speed, 3), "speedup_b1": round(speed1, 3),
                     "mac_reduction": round(mac_red, 3) if mac_red else None,
                     "gain_per_mac": round(speed / mac_red, 3) if mac_red else None,
                     "size_ratio": round(m.size_bytes / b.size_bytes, 4) if m.size_bytes and b.size_bytes else None,
                     "quality_delta": round(m.quality - b.quality, 4) if m.quality is not None else None})
    return rows


def cnn_group(label: str, model, train, test, ratios, recovery_epochs, runs, extra_sparse: bool,
              n_threads: int) -> list[dict]:
    ex = train.X[:2]
    models, meta = {"dense": model}, {"dense": {"group": label, "method": "dense"}}
    for r in ratios:
        res = ss.prune(model, ss.StructuredPruning(ratio=r, importance="l2", recovery="finetune",
                                                   recovery_epochs=recovery_epochs), example_inputs=ex, data=train)
        models[f"structured-l2-{r}"] = res.model
        meta[f"structured-l2-{r}"] = {"group": label, "method": "structured", "importance": "l2", "ratio": r}
    r = 0.5
    res = ss.prune(model, ss.StructuredPruning(ratio=r, importance="random", recovery="finetune",
                                               recovery_epochs=recovery_epochs), example_inputs=ex, data=train)
    models[f"structured-random-{r}"] = res.model
    meta[f"structured-random-{r}"] = {"group": label, "method": "structured", "importance": "random", "ratio": r}
    models[f"torch-nn-utils-prune-{r}"] = torch_prune_masks(model, r, train, recovery_epochs)
    meta[f"torch-nn-utils-prune-{r}"] = {"group": label, "method": "torch.nn.utils.prune ln_structured", "ratio": r}
    if extra_sparse:
        res = ss.prune(model, ss.MagnitudePruning(sparsity=0.8, recovery="finetune", recovery_epochs=recovery_epochs),
                       data=train)
        models["magnitude-0.8"], meta["magnitude-0.8"] = res.model, {"group": label, "method": "unstructured", "ratio": 0.8}
        res = ss.prune(model, ss.NMPruning(n=2, m=4, recovery="finetune", recovery_epochs=recovery_epochs), data=train)
        models["nm-2:4"], meta["nm-2:4"] = res.model, {"group": label, "method": "2:4", "ratio": 0.5}
    c_big = ss.compare(models, test, batch_size=256, threads=n_threads, runs=runs)
    c_one = ss.compare(models, test, batch_size=1, threads=n_threads, runs=runs * 3, quality=False, cost=False)
    print(c_big.table())
    return rows_from(c_big, c_one, meta, "dense")


def minilm_group(quick: bool, runs: int, n_threads: int) -> list[dict]:
    enc = ss.zoo.minilm()
    train = ss.datasets.load("stsb", split="train")
    dev = ss.datasets.load("stsb", split="test")
    steps, dev_pairs = (60, 300) if quick else (300, len(dev))
    dev = dev.subset(slice(0, dev_pairs))
    cfg = ss.StructuredPruning(ratio=0.5, head_ratio=0.25, importance="taylor", recovery="distill",
                               recovery_steps=steps, taylor_batches=8)
    t0 = time.perf_counter()
    res = ss.prune(enc, cfg, data=train)
    prune_s = time.perf_counter() - t0
    meta = {"fp32": {"group": "minilm", "method": "dense"},
            "pruned-ffn50-heads25-distilled": {"group": "minilm", "method": "structured", "importance": "taylor",
                                               "ratio": 0.5, "head_ratio": 0.25, "recovery_steps": steps,
                                               "recovery_sentences": steps * 32, "prune_and_recover_s": round(prune_s, 1),
                                               "dev_pairs": dev_pairs}}
    models = {"fp32": enc, "pruned-ffn50-heads25-distilled": res.model}
    c_big = ss.compare(models, dev, batch_size=128, threads=n_threads, runs=runs)
    c_one = ss.compare(models, dev, batch_size=1, threads=n_threads, runs=runs * 3, quality=False, cost=False)
    print(c_big.table())
    return rows_from(c_big, c_one, meta, "fp32")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    skip_minilm = "--no-minilm" in argv  # the CNN groups alone, e.g. for a second thread count
    argv = [a for a in argv if a != "--no-minilm"]
    args = parse_args("prune", "structured, unstructured and N:M pruning: size, speed and quality "
                      "(--no-minilm: digits models only)", argv)
    quick = args.quick
    torch.manual_seed(0)
    start = time.perf_counter()
    rows: list[dict] = []
    with threads(args.threads):
        train = ss.datasets.load("digits", split="trainval", seed=0)
        test = ss.datasets.load("digits", split="test", seed=0)
        epochs, rec, runs = (6, 5, 10) if quick else (20, 8, 30)
        cnn = ss.zoo.train(ss.zoo.digits_cnn(), train, epochs=epochs, seed=0)
        rows += cnn_group("digits-cnn", cnn, train, test, (0.5, 0.7) if quick else (0.3, 0.5, 0.7), rec, runs, True, args.threads)
        res = ss.zoo.train(ss.zoo.digits_resnet(width=32 if quick else 64), train, epochs=epochs, seed=0)
        rows += cnn_group("digits-resnet", res, train, test, (0.5,) if quick else (0.5, 0.7), rec, runs, False, args.threads)
        if not skip_minilm:
            rows += minilm_group(quick, runs, args.threads)
    write("prune", args, rows, seconds=round(time.perf_counter() - start, 1),
          omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))


if __name__ == "__main__":
    main()
