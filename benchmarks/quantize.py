"""Quantization benchmark: all-MiniLM-L6-v2 on STS-B dev, digits CNN/MLP static int8, MiniLM weight-only int4.

Every variant runs in one process with 2 intra-op threads, interleaved round by round (A B C, B C
A, ...); the median round is reported. Two timings per MiniLM variant:

- **model only**: the forward pass (embeddings, layers, pooling) on the tokenized batches that
  ``encode`` forms (batch 128, max length 128, sorted by token count), tokenization untimed;
- **end to end**: ``model.encode(texts, batch_size=128)`` on the raw sentences (tokenize + model +
  pool + copies). The baseline is **plain fp32**: ``ss.zoo.minilm()`` run by the encode pipeline as
  shipped before issue 13 (:func:`plain_encode`: one tokenizer call per batch, batches sorted by
  characters). fp32 run by today's ``encode`` is reported too, so the gain splits into pipeline
  (plain fp32 -> fp32 ``encode``) and int8 (fp32 ``encode`` -> int8 ``encode``). Selected int8
  variants are also timed through the plain pipeline.

The anchors (torch.ao quantize_dynamic, plain onnxruntime quantize_dynamic, ONNX Runtime fp32) are
measured in the same rounds. ``--quick`` uses the first 500 STS-B dev pairs and fewer rounds; the
full run uses all 1500 pairs.

    PYTHONPATH=src python benchmarks/quantize.py --quick
"""

from __future__ import annotations

import copy
import io
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
from slimstack._utils import threads as fixed_threads  # noqa: E402
from slimstack.measure._metrics import sts_metrics  # noqa: E402
from slimstack.quantize.backends.onnxruntime._export import export_onnx  # noqa: E402
from slimstack.quantize.backends.onnxruntime._models import OrtSentenceEncoder  # noqa: E402
from slimstack.zoo._batching import length_batches  # noqa: E402

warnings.filterwarnings("ignore")


def saved_size(model: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        ss.save(model, Path(tmp) / "m")
        return sum(f.stat().st_size for f in (Path(tmp) / "m").rglob("*") if f.is_file())


def tokenizer_size(enc: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        enc.tokenizer.save_pretrained(tmp)
        return sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())


def torch_runner(model: Any, batches: list) -> Any:
    def run(b: dict) -> np.ndarray:
        with torch.inference_mode():
            return model(**b).float().numpy()

    return [b for _, b in batches], run


def plain_encode(model: Any, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """``SentenceEncoder.encode`` / ``OrtSentenceEncoder.encode`` as they were before issue 13: the baseline.

    Batches are sorted by characters, each tokenized by its own ``tokenizer(..., padding=True,
    return_tensors="pt")`` call, and pooled with a (batch, length, dim) mask product.
    """
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), model.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            tok = model.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                  max_length=model.max_length, return_tensors="pt")
            ids, mask = tok["input_ids"], tok["attention_mask"]
            if isinstance(model, OrtSentenceEncoder):
                out[idx] = model.run_feeds({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
                continue
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(emb, p=2, dim=-1).float().numpy()
    return out


# Variants also timed through the plain (pre-issue-13) pipeline, to split pipeline gain from int8 gain.
PLAIN_PIPELINE = ("fp32 PyTorch", "slimstack StaticInt8 auto (mse), mixed int8/int4 embeddings",
                  "slimstack DynamicInt8 auto")


def interleaved(fns: dict[str, Any], rounds: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Median-ready times of each ``fn()`` over ``rounds`` rotated rounds, after one warm-up round."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, Any] = {}
    for r in range(rounds + 1):
        for n in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            out = fns[n]()
            dt = time.perf_counter() - t0
            if r:
                times[n].append(dt)
            else:
                first[n] = out
    return times, first


def ort_runner(model: OrtSentenceEncoder, batches: list) -> Any:
    model.set_threads(2)
    return [OrtSentenceEncoder.feeds(b) for _, b in batches], model.run_feeds


def minilm_part(args: Any) -> tuple[list[dict], dict]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    enc = ss.zoo.minilm()
    dev = ss.datasets.load("stsb", split="test")
    n_pairs = 500 if args.quick else len(dev.pairs)
    pairs, gold = dev.pairs[:n_pairs], dev.scores[:n_pairs]
    texts = [s for p in pairs for s in p]
    batches = list(length_batches(enc.tokenizer, texts, 128, 128))  # the batches enc.encode(texts) runs
    # Calibration/fallback data come from STS-B *train*, never from the dev pairs being scored.
    train = ss.datasets.load("stsb", split="train")
    calib = [s for p in train.pairs[:256] for s in p]
    tune = train.subset(np.arange(150 if args.quick else 300))
    before = enc.encode(texts[:16])

    variants: dict[str, dict[str, Any]] = {}
    fp32_size = saved_size(enc)
    variants["fp32 PyTorch"] = {"model": enc, "kind": "torch", "size": fp32_size, "anchor": True}

    t0 = time.time()
    ao = torch.ao.quantization.quantize_dynamic(copy.deepcopy(enc), {torch.nn.Linear}, dtype=torch.qint8)
    buf = io.BytesIO()
    torch.save(ao.state_dict(), buf)  # in memory only, to size the anchor
    variants["anchor: torch.ao quantize_dynamic"] = {"model": ao, "kind": "torch",
                                                     "size": buf.tell() + tokenizer_size(enc), "anchor": True}
    plain = export_onnx(enc, batches[0][1])
    with tempfile.TemporaryDirectory() as tmp:
        import onnx

        onnx.save(plain, f"{tmp}/f.onnx")
        quantize_dynamic(f"{tmp}/f.onnx", f"{tmp}/q.onnx", weight_type=QuantType.QInt8)
        plain_q = onnx.load(f"{tmp}/q.onnx")
    for name, proto in (("anchor: ONNX Runtime fp32", plain), ("anchor: onnxruntime quantize_dynamic", plain_q)):
        m = OrtSentenceEncoder(proto, enc.tokenizer, dim=384, max_length=128)
        variants[name] = {"model": m, "kind": "ort", "size": saved_size(m), "anchor": True}
    print(f"anchors built in {time.time() - t0:.0f}s", flush=True)

    configs: dict[str, tuple[Any, dict[str, Any]]] = {
        "slimstack StaticInt8 auto (mse)": (ss.StaticInt8(observer="mse"), {"calibration": calib}),
        "slimstack StaticInt8 auto (mse), int4 embeddings": (
            ss.StaticInt8(observer="mse", embedding_bits=4), {"calibration": calib}),
        "slimstack StaticInt8 auto (mse), mixed int8/int4 embeddings": (
            ss.StaticInt8(observer="mse", embedding_bits="mixed"), {"calibration": calib}),
        "slimstack StaticInt8 torch (mse), layers not fused": (
            ss.StaticInt8(backend="torch", observer="mse", fuse_layers=False), {"calibration": calib}),
        "slimstack DynamicInt8 auto": (ss.DynamicInt8(), {"calibration": calib[:128]}),
        "slimstack DynamicInt8 torch, layers not fused": (ss.DynamicInt8(backend="torch", fuse_layers=False), {}),
        "slimstack DynamicInt8 ORT reduce_range": (ss.DynamicInt8(backend="onnxruntime", reduce_range=True), {}),
        "slimstack DynamicInt8 ORT unfused reduce_range": (
            ss.DynamicInt8(backend="onnxruntime", reduce_range=True, optimize_graph=False), {}),
        "slimstack WeightOnly int4 g128": (ss.WeightOnly(bits=4, group_size=128), {}),
    }
    if not args.quick:  # slower to build (fallback: ~25 quantize+encode trials) or to run
        configs.update({
            "slimstack DynamicInt8 ORT + fallback (tol 0.1%)": (
                ss.DynamicInt8(backend="onnxruntime"), {"data": tune, "tolerance": 0.001}),
            "slimstack StaticInt8 torch (percentile)": (
                ss.StaticInt8(backend="torch", observer="percentile"), {"calibration": calib}),
            "slimstack StaticInt8 torch SmoothQuant": (
                ss.StaticInt8(backend="torch", observer="percentile", smoothquant_alpha=0.5), {"calibration": calib}),
            "slimstack WeightOnly int8 g128": (ss.WeightOnly(bits=8, group_size=128), {}),
        })
    records = {}
    for name, (cfg, kw) in configs.items():
        t0 = time.time()
        r = ss.quantize(enc, cfg, **kw)
        kind = "ort" if isinstance(r.model, OrtSentenceEncoder) else "torch"
        variants[name] = {"model": r.model, "kind": kind, "size": saved_size(r.model), "anchor": False}
        records[name] = {"backend": r.record.backend, "backend_reason": r.record.backend_reason,
                         "kept_float": r.record.kept_float if kind == "ort" or r.record.tolerance else
                         {k: v for k, v in r.record.kept_float.items() if "LayerNorm" not in k},
                         "candidates": r.record.candidates, "quantize_s": round(time.time() - t0, 1)}
        print(f"{name}: {r.record.summary()} ({time.time() - t0:.0f}s)", flush=True)
    unchanged = bool(np.array_equal(before, enc.encode(texts[:16])))

    runners = {n: (ort_runner if v["kind"] == "ort" else torch_runner)(v["model"], batches) for n, v in variants.items()}
    names = list(runners)

    def model_only(n: str) -> Any:
        feeds, run = runners[n]
        out = np.empty((len(texts), 384), dtype=np.float32)
        for (idx, _), f in zip(batches, feeds, strict=True):
            out[idx] = run(f)
        return out

    e2e = {f"encode {n}": (lambda m=variants[n]["model"]: m.encode(texts, batch_size=128)) for n in names}
    e2e.update({f"plain {n}": (lambda m=variants[n]["model"]: plain_encode(m, texts, 128))
                for n in PLAIN_PIPELINE if n in variants})
    rounds = 3 if args.quick else 7
    with fixed_threads(2):
        times, outs = interleaved({n: (lambda n=n: model_only(n)) for n in names}, rounds)
        e2e_times, e2e_outs = interleaved(e2e, rounds)
    quality = {n: sts_metrics(outs[n], gold)["spearman"] for n in names}
    # encode() must give what the model gives on the same batches, and the plain pipeline what encode gives.
    agree = {k: float(np.min(np.sum(o * outs[k.split(" ", 1)[1]], axis=1))) for k, o in e2e_outs.items()}
    base = float(np.median(times["fp32 PyTorch"]))
    plain_base = float(np.median(e2e_times["plain fp32 PyTorch"]))
    encode_base = float(np.median(e2e_times["encode fp32 PyTorch"]))
    rows = []
    for n in names:
        lat = float(np.median(times[n]))
        end = float(np.median(e2e_times[f"encode {n}"]))
        plain = float(np.median(e2e_times[f"plain {n}"])) if f"plain {n}" in e2e_times else None
        v = variants[n]
        rows.append({"name": f"MiniLM {n}", "part": "minilm", "anchor": v["anchor"], "quality": quality[n],
                     "quality_metric": "spearman", "latency_ms": 1e3 * lat / len(batches),
                     "total_model_s": lat, "speedup_vs_fp32": base / lat, "size_bytes": v["size"],
                     "size_vs_fp32": v["size"] / fp32_size, "params": 22713216,
                     "e2e_encode_s": end, "e2e_speedup_vs_plain_fp32": plain_base / end,
                     "e2e_speedup_vs_fp32_encode": encode_base / end,
                     "e2e_plain_s": plain, "e2e_plain_speedup_vs_plain_fp32": plain and plain_base / plain,
                     "e2e_min_cosine_to_model_only": agree[f"encode {n}"],
                     "plain_min_cosine_to_model_only": agree.get(f"plain {n}"), "record": records.get(n)})
        print(f"{n:58s} spearman={quality[n]:.4f} model={base / lat:.2f}x e2e={plain_base / end:.2f}x "
              f"(vs fp32 encode {encode_base / end:.2f}x{f', plain pipeline {plain_base / plain:.2f}x' if plain else ''})"
              f" size={v['size'] / fp32_size:.1%}", flush=True)
    meta = {"targets": minilm_targets(rows), "minilm": {
        "pairs": n_pairs, "batches": len(batches), "batch_size": 128, "max_length": 128, "rounds": rounds,
        "input_unchanged": unchanged, "e2e_plain_fp32_s": plain_base, "e2e_fp32_encode_s": encode_base,
        "pipeline_gain_fp32": plain_base / encode_base, "calibration": "256 STS-B train pairs",
        "fallback_data": f"{len(tune)} STS-B train pairs"}}
    return rows, meta


def minilm_targets(rows: list[dict]) -> dict:
    """Issue 4's MiniLM targets, judged from the rows: quality >= 99.9 % of fp32, >= 3x, file <= 25 %."""
    fp32 = rows[0]
    anchors = [r for r in rows[1:] if r["anchor"] and "fp32" not in r["name"]]
    ours = [r for r in rows if not r["anchor"]]
    floor = 0.999 * fp32["quality"]
    accurate = [r for r in ours if r["quality"] >= floor]
    best = max(accurate, key=lambda r: r["speedup_vs_fp32"], default=None)
    all_three = [r["name"] for r in accurate if r["speedup_vs_fp32"] >= 3 and r["size_vs_fp32"] <= 0.25]
    beat = [r["name"] for r in ours if all(r["quality"] > a["quality"] and r["speedup_vs_fp32"] > a["speedup_vs_fp32"]
                                           for a in anchors)]
    # Issue 13 item 9: end to end (tokenize + model + pool) >= 3.5x plain fp32 at <= 25 % of its size.
    fastest_e2e = max((r for r in accurate if r["size_vs_fp32"] <= 0.25), key=lambda r: r["e2e_speedup_vs_plain_fp32"],
                      default=None)
    e2e_keys = ("name", "quality", "speedup_vs_fp32", "e2e_speedup_vs_plain_fp32", "e2e_speedup_vs_fp32_encode",
                "e2e_plain_speedup_vs_plain_fp32", "size_vs_fp32")
    return {"spearman_floor": floor,
            "fastest_within_floor": best and {k: best[k] for k in ("name", "quality", "speedup_vs_fp32",
                                                                   "size_vs_fp32")},
            "variants_meeting_all_three": all_three, "variants_beating_both_anchors": beat,
            "e2e_fastest_within_floor_and_size": fastest_e2e and {k: fastest_e2e.get(k) for k in e2e_keys},
            "e2e_variants_meeting_target": [r["name"] for r in accurate if r["size_vs_fp32"] <= 0.25
                                            and r["e2e_speedup_vs_plain_fp32"] >= 3.5]}


def digits_part(args: Any) -> list[dict]:
    train = ss.datasets.load("digits", split="train")
    test = ss.datasets.load("digits", split="test")
    rows = []
    for arch in ("cnn", "mlp"):
        model = ss.zoo.train(getattr(ss.zoo, f"digits_{arch}")(), train, epochs=5 if args.quick else 20, seed=0)
        models = {"fp32": model}
        recs = {}
        for label, cfg in (("StaticInt8 auto minmax", ss.StaticInt8()),
                           ("StaticInt8 torch percentile", ss.StaticInt8(backend="torch", observer="percentile")),
                           ("StaticInt8 torch entropy", ss.StaticInt8(backend="torch", observer="entropy")),
                           ("QAT torch", ss.QAT(epochs=1 if args.quick else 3))):
            kw = {"data": train} if isinstance(cfg, ss.QAT) else {"calibration": train}
            r = ss.quantize(model, cfg, **kw)
            models[label], recs[label] = r.model, r.record
        c = ss.compare(models, test, batch_size=256, runs=10 if args.quick else 30)
        for n, m in c.measurements.items():
            rows.append({"name": f"digits {arch.upper()} {n}", "part": f"digits_{arch}", "quality": m.quality,
                         "quality_metric": m.quality_metric, "latency_ms": m.latency_ms, "size_bytes": m.size_bytes,
                         "params": m.params, "speedup_vs_fp32": c.ratio("fp32", n, "latency_ms"),
                         "accuracy_drop_points": 100 * (c.measurements["fp32"].quality - m.quality),
                         "backend": recs[n].backend if n in recs else "torch"})
            print(f"digits {arch} {n:28s} acc={m.quality:.4f} lat={m.latency_ms:.2f}ms size={m.size_bytes}", flush=True)
    return rows


def markdown(payload: dict) -> str:
    """The docs' results table, generated from the benchmark JSON."""
    m = payload["machine"]
    lines = [f"{'Quick' if payload['quick'] else 'Full'} run: {m['cpu']}, {m['threads']} threads, torch {m['torch']}, "
             f"{m['date']}; MiniLM on {payload['minilm']['pairs']} STS-B dev pairs, batch 128, max length 128. "
             "*model*: forward pass only on the batches `encode` forms, vs fp32 on the same batches; *e2e*: "
             "`encode(texts)` (tokenize + model + pool) vs **plain fp32** (`ss.zoo.minilm()` through the "
             "pre-issue-13 encode pipeline); *e2e vs fp32 encode*: vs fp32 through today's `encode` (the int8 share "
             "alone); *plain e2e*: the variant itself through the pre-issue-13 pipeline.", "",
             "| variant | quality | metric | model speedup | e2e speedup vs plain fp32 | e2e vs fp32 encode | "
             "plain e2e | latency ms/batch | size | size vs fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def x(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}x"

    first: dict[str, float] = {}
    for r in payload["rows"]:
        first.setdefault(r["part"], r["size_bytes"])  # each part's first row is its fp32 model
        size_ratio = r.get("size_vs_fp32") or r["size_bytes"] / first[r["part"]]
        lines.append(f"| {r['name']} | {r['quality']:.4f} | {r['quality_metric']} | "
                     f"{x(r.get('speedup_vs_fp32'))} | {x(r.get('e2e_speedup_vs_plain_fp32'))} | "
                     f"{x(r.get('e2e_speedup_vs_fp32_encode'))} | {x(r.get('e2e_plain_speedup_vs_plain_fp32'))} | "
                     f"{r['latency_ms']:.1f} | "
                     f"{r['size_bytes'] / 1e6:.2f} MB | {f'{size_ratio:.1%}' if size_ratio else '-'} |")
    t = payload.get("targets")
    if t:
        f = t["fastest_within_floor"]
        lines += ["", f"Target (Spearman >= {t['spearman_floor']:.4f}, >= 3x, file <= 25 %): fastest variant within the "
                  f"Spearman floor is **{f['name']}** at {f['quality']:.4f}, {f['speedup_vs_fp32']:.2f}x, "
                  f"{f['size_vs_fp32']:.1%} of the fp32 file; all three at once: "
                  f"{', '.join(t['variants_meeting_all_three']) or 'none'}. Faster and more accurate than every "
                  f"int8 anchor at once: {', '.join(t['variants_beating_both_anchors']) or 'none'}."]
        e = t.get("e2e_fastest_within_floor_and_size")
        if e:
            mm = payload["minilm"]
            lines += ["", f"End to end (target >= 3.5x plain fp32 at <= 25 % of its size, within the Spearman floor): "
                      f"fastest is **{e['name']}** at {e['e2e_speedup_vs_plain_fp32']:.2f}x plain fp32 "
                      f"({e['e2e_speedup_vs_fp32_encode']:.2f}x fp32 through the same `encode`; model only "
                      f"{e['speedup_vs_fp32']:.2f}x), {e['size_vs_fp32']:.1%} of the fp32 file; the pipeline alone "
                      f"makes fp32 {mm['pipeline_gain_fp32']:.2f}x faster ({mm['e2e_plain_fp32_s']:.2f} s -> "
                      f"{mm['e2e_fp32_encode_s']:.2f} s). Meeting it: "
                      f"{', '.join(t['e2e_variants_meeting_target']) or 'none'}."]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--table":  # print the docs table from a results file
        import json

        print(markdown(json.loads(Path(sys.argv[2]).read_text())))
        return
    args = parse_args("quantize", __doc__.splitlines()[0])
    torch.manual_seed(0)
    t0 = time.time()
    rows, meta = minilm_part(args)
    rows += digits_part(args)
    meta["wall_s"] = round(time.time() - t0, 1)
    write("quantize", args, rows, **meta)


if __name__ == "__main__":
    main()
