"""Target (d): the fastest slimstack SmolLM2 (structured pruning + distillation + 4-bit) against llama.cpp's Q4_K_M.

Usage: python benchmarks/llm_fast.py [--quick] [--out FILE.json] [--threads N] [--lock /tmp/bench.lock]
                                     [--work DIR] [--steps N] [--no-cuts]

Two parts, every llama.cpp model decoded interleaved in one process (batch 1, 128 new tokens, EOS
ignored), median of the reps:

1. **What each structural cut buys in decode speed** (rows of kind "cut"): the dense model and
   pruned copies (layers 30 -> 28/26/24/20/10/1, FFN -25/-50 %, 2 of 3 KV groups, 6 of 9 query
   heads) written as F32 GGUF by slimstack and quantized by llama.cpp's own quantizer to Q4_0 (tied
   embedding/head at Q8_0, llama.cpp's choice) and, for the head, to Q4_0 everywhere. Speed only: the
   cut units are picked with one calibration window, quality is not the point here.
2. **Pareto points** (kind "anchor" / "slimstack"): llama.cpp Q4_K_M and Q4_0 rebuilt from the packaged
   file, and slimstack pipelines: ``ss.prune`` (LayerDrop / WidthPruning, optional distillation
   recovery from the dense model) then ``ss.quantize(WeightOnly(bits=4, backend="llamacpp"))`` (GPTQ
   Q4_0 blocks, head Q8_0); and the speed-first 4-bit rows: ``formats=("Q4_0", "Q8_0")`` (llama.cpp's
   two fastest kernels here, the head at Q4_0 too), ``untie_head=True`` (the head GPTQ-rounded as its
   own tensor, the lookup embedding at Q8_0) and ``distill_steps`` (block scales and norms distilled
   from the float model, codes fixed), alone and under a ``bits_per_weight`` budget.
   Quality: mean per-token KL(fp32 dense || variant), top-1 agreement and perplexity on held-out text
   scored as llama.cpp's perplexity/KL tool does (as ``llm_quant.py``): chunks of 512 tokens of torch's
   PyPI description, the last 256 of each scored (8 chunks with --quick, all 17 without); the
   ``*_spread`` columns keep the first runs' protocol (8 windows of 256 tokens spread over the text,
   every position scored, the first window holding its markdown/HTML header). Nothing here trains or
   calibrates on that text: pruning calibration, distillation and GPTQ read the long descriptions of
   other installed packages. The float KLD of each pruned model (before 4-bit) is reported too, so
   the loss splits into pruning and quantization.

Timings: ``decode_tokens_per_s`` is wall time; ``decode_cpu_tokens_per_s`` is tokens per CPU-second
of this process (at ``--threads 1`` it is insensitive to other processes on a shared machine; with
more threads llama.cpp's spin-waits count as CPU time). ``speed_vs_q4_k_m`` uses the wall figure at
2+ threads and the CPU figure at 1 thread. ``--work DIR`` keeps built models (pruned folders, GGUF
files, scores) so an interrupted run resumes; without it a temporary folder is used.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, write  # noqa: E402
from llm_quant import (CHUNK, CONTEXT, _timing_lock, anchors, calibration_text, eval_chunks, eval_text,  # noqa: E402
                       score)

WINDOW = 256
N_EVAL = 8
BUDGETS = (4.75,)  # bits per weight of the Q4_0/Q8_0 mix (all Q4_0 is 4.5; the lookup embedding not counted)
NL_BUDGETS = (4.75, 5.0)  # the same for the IQ4_NL/Q8_0 mixes
TUNE_STEPS = (100, 300)  # block-scale distillation steps, quick / full


def _extra(p) -> None:
    p.add_argument("--lock", default="", help="flock this file while timing (e.g. /tmp/bench.lock)")
    p.add_argument("--work", default="", help="folder that keeps built models between runs (resume)")
    p.add_argument("--steps", type=int, default=None, help="distillation steps (default 24 quick, 200 full)")
    p.add_argument("--no-cuts", action="store_true", help="skip part 1 (speed of each structural cut)")
    p.add_argument("--reps", type=int, default=None, help="timing reps per model (default 3 quick, 5 full)")
    p.add_argument("--tune-steps", type=int, default=None, help="block-scale distillation steps (default 100 quick, "
                   "300 full)")
    p.add_argument("--only", default="", help="comma-separated substrings: build only the pipelines they name")


def eval_windows(ids: list[int]) -> list[list[int]]:
    starts = np.linspace(0, len(ids) - WINDOW, N_EVAL).round().astype(int)
    return [ids[s: s + WINDOW] for s in starts]


def quality(logprobs, windows, refs) -> dict[str, Any]:
    kl, top1, nll, n = [], [], 0.0, 0
    for w, ref in zip(windows, refs, strict=True):
        lp = logprobs(w)
        p = np.exp(ref.astype(np.float64))
        kl.append(float((p * (ref - lp.astype(np.float64))).sum(-1).mean()))
        top1.append(float((ref.argmax(-1) == lp.argmax(-1)).mean()))
        nll -= float(lp[np.arange(len(w) - 1), np.asarray(w[1:])].sum())
        n += len(w) - 1
    return {"kld": float(np.mean(kl)), "kld_per_window": [round(v, 4) for v in kl],
            "top1_agreement": float(np.mean(top1)), "perplexity": float(np.exp(nll / n))}


def pipelines(steps: int, quick: bool, tune_steps: int) -> dict[str, tuple[Any, Any]]:
    """name -> (pruning config or None, quantization config)."""
    import slimstack as ss

    calib = dict(calibration_windows=8 if quick else 32, calibration_tokens=256)
    rec = dict(recovery="distill", recovery_steps=steps, recovery_batch=2 if quick else 4, recovery_tokens=128,
               recovery_lr=1e-4)
    q40 = ss.WeightOnly(bits=4, group_size=32, backend="llamacpp", calibration_size=16 if quick else 64)
    # llama.cpp's two fastest CPU kernels (Q4_0, Q8_0) for every tensor, the tied head included; scales and
    # norms distilled from the float model, codes fixed (same file, same kernels)
    fast = dict(bits=4, group_size=32, backend="llamacpp", formats=("Q4_0", "Q8_0"),
                calibration_size=128 if quick else 256)
    out = {
        "slimstack Q4_0 (dense, GPTQ)": (None, q40),
        "drop 2 layers -> Q4_0": (ss.LayerDrop(layers=2, **calib), q40),
        "drop 2 layers + distill (near cut) -> Q4_0": (ss.LayerDrop(layers=2, **calib, **rec,
                                                                    recovery_params="near_cut"), q40),
        "drop 4 layers + distill (near cut) -> Q4_0": (ss.LayerDrop(layers=4, **calib, **rec,
                                                                    recovery_params="near_cut"), q40),
        "FFN -25 % (refit) -> Q4_0": (ss.WidthPruning(ffn_ratio=0.25, **calib), q40),
        "KV groups 3 -> 2 (refit) -> Q4_0": (ss.WidthPruning(ffn_ratio=0.0, head_ratio=0.34, **calib), q40),
        "Q4_0 everywhere, head too (GPTQ)": (None, ss.WeightOnly(**fast)),
        "Q4_0 everywhere, head too + distilled scales": (None, ss.WeightOnly(**fast, distill_steps=tune_steps)),
    }
    # the head as its own tensor, GPTQ-rounded for its inputs; the lookup embedding apart at Q8_0 (no decode cost)
    out["Q4_0 everywhere, untied head (GPTQ)"] = (None, ss.WeightOnly(**fast, untie_head=True))
    out["Q4_0 everywhere, untied head + distilled scales"] = (
        None, ss.WeightOnly(**fast, untie_head=True, distill_steps=tune_steps))
    # IQ4_NL: llama.cpp's non-uniform 4-bit grid (4.5 bpw like Q4_0), measured as fast as Q4_0 here
    nl = {**fast, "formats": ("IQ4_NL", "Q8_0")}
    out["IQ4_NL everywhere, untied head (GPTQ)"] = (None, ss.WeightOnly(**nl, untie_head=True))
    out["IQ4_NL everywhere, untied head (GPTQ, 32 windows of 512)"] = (
        None, ss.WeightOnly(**{**nl, "calibration_size": 32, "window": 512}, untie_head=True))
    out["IQ4_NL everywhere, untied head + distilled scales"] = (
        None, ss.WeightOnly(**nl, untie_head=True, distill_steps=tune_steps))
    for bpw in NL_BUDGETS:
        out[f"IQ4_NL/Q8_0 mix <= {bpw} bpw, untied head (GPTQ)"] = (
            None, ss.WeightOnly(**nl, untie_head=True, bits_per_weight=bpw))
    for bpw in BUDGETS:
        out[f"Q4_0/Q8_0 mix <= {bpw} bpw, untied head + distilled scales"] = (
            None, ss.WeightOnly(**fast, untie_head=True, bits_per_weight=bpw, distill_steps=tune_steps))
    if not quick:
        out["drop 2 layers + distill (blocks) -> Q4_0"] = (ss.LayerDrop(layers=2, **calib, **rec,
                                                                        recovery_params="blocks"), q40)
        out["FFN -25 % (refit) + distill (blocks) -> Q4_0"] = (ss.WidthPruning(ffn_ratio=0.25, **calib, **rec,
                                                                               recovery_params="blocks"), q40)
    return out


def build_cuts(lm: Any, work: Path, calib: list[str]) -> dict[str, Path]:
    """Part 1: llama.cpp's own Q4_0 (and Q4_0-everywhere) GGUF of structurally cut copies (speed only)."""
    import llama_cpp

    import slimstack as ss
    from slimstack.llm import shrink_lm
    from slimstack.quantize.backends.llamacpp import write_gguf

    one = dict(calibration_windows=1, calibration_tokens=256, refit=False)
    cuts: dict[str, Any] = {f"{n} of 30 layers": (lambda n=n: shrink_lm(lm, n)) for n in (30, 28, 26, 24, 20, 10, 1)}
    cuts["FFN -25 %"] = lambda: ss.prune(lm, ss.WidthPruning(ffn_ratio=0.25, **one), calibration=calib).model
    cuts["FFN -50 %"] = lambda: ss.prune(lm, ss.WidthPruning(ffn_ratio=0.5, **one), calibration=calib).model
    cuts["KV groups 3 -> 2"] = lambda: ss.prune(lm, ss.WidthPruning(ffn_ratio=0.0, head_ratio=0.34, **one),
                                                calibration=calib).model
    cuts["query heads 9 -> 6"] = lambda: ss.prune(lm, ss.WidthPruning(ffn_ratio=0.0, head_ratio=0.34,
                                                                      heads="queries", **one), calibration=calib).model
    out = {}
    for name, make in cuts.items():
        stem = name.replace(" ", "_").replace("%", "pct").replace(">", "").replace("-", "m")
        targets = {f"cut {name} Q4_0": (work / f"cut-{stem}-Q4_0.gguf", None)}
        if name in ("30 of 30 layers", "24 of 30 layers"):
            targets[f"cut {name} Q4_0, head Q4_0"] = (work / f"cut-{stem}-Q4_0-head.gguf", llama_cpp.GGML_TYPE_Q4_0)
        if all(p.exists() for p, _ in targets.values()):
            out.update({k: p for k, (p, _) in targets.items()})
            continue
        f32 = work / f"cut-{stem}-F32.gguf"
        model = make()
        write_gguf(model.model, model.tokenizer, f32, pre="smollm", name=name)
        for key, (dst, embd) in targets.items():
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype, params.allow_requantize, params.nthread = 2, True, 2  # 2 = MOSTLY_Q4_0
            if embd is not None:
                params.token_embedding_type = embd
            if llama_cpp.llama_model_quantize(str(f32).encode(), str(dst).encode(), params) != 0:
                raise SystemExit(f"llama_model_quantize failed for {key}")
            out[key] = dst
        f32.unlink()
    return out


def slug(name: str) -> str:
    """A row's file stem in ``--work`` (``<slug>.gguf``, ``<slug>.json``)."""
    return "".join(c if c.isalnum() else "_" for c in name)


def judge(logprobs, ev) -> dict[str, Any]:
    """Quality on llama.cpp's protocol (the row's kld / top-1 / perplexity) and on the spread windows (*_spread)."""
    out = score(SimpleNamespace(logprobs_ids=logprobs), ev["chunks"], ev["chunk_refs"])
    out.update({f"{k}_spread": v for k, v in quality(logprobs, ev["spread"], ev["spread_refs"]).items()})
    return out


def build_pipeline(name: str, cfg: Any, qcfg: Any, lm: Any, calib: list[str], train: list[str], work: Path,
                   ev: dict) -> dict[str, Any]:
    """Prune (+ recovery) -> 4-bit GGUF; the pruned float model's quality and the build times, cached in ``work``."""
    import slimstack as ss
    from slimstack.quantize.backends.llamacpp import LlamaCppLM

    meta_path, gguf = work / f"{slug(name)}.json", work / f"{slug(name)}.gguf"
    if meta_path.exists() and gguf.exists():
        return json.loads(meta_path.read_text())
    meta: dict[str, Any] = {"config": None if cfg is None else cfg.to_dict(), "quant_config": qcfg.to_dict()}
    t0, c0 = time.perf_counter(), time.process_time()
    pruned = lm
    if cfg is not None:
        r = ss.prune(lm, cfg, calibration=calib, train=train if getattr(cfg, "recovery", "none") != "none" else None)
        pruned = r.model
        meta["prune_summary"] = {k: r.summary.get(k) for k in ("dropped_layers", "kept_layers", "intermediate_size",
                                                                "recovery", "params")}
        meta["prune_wall_s"], meta["prune_cpu_s"] = round(time.perf_counter() - t0, 1), round(time.process_time() - c0, 1)
        meta["float"] = judge(lambda w: pruned.logprobs(np.asarray(w), max_tokens=len(w))[1], ev)
    t1, c1 = time.perf_counter(), time.process_time()
    q = ss.quantize(pruned, qcfg, calibration=calib, threads=2)
    q.model.save(gguf)
    q.model.close()
    meta["quantize_wall_s"], meta["quantize_cpu_s"] = round(time.perf_counter() - t1, 1), round(time.process_time() - c1, 1)
    meta["formats"] = {f: sum(1 for x in q.record.layers if x.get("format") == f) for f in ("Q4_0", "IQ4_NL", "Q8_0")}
    meta["head"] = next((x["format"] for x in q.record.layers if x["name"] in ("model.embed_tokens", "lm_head")), None)
    meta["notes"] = [n for n in q.record.notes if n.startswith(("scales distilled", "sensitivity"))]
    m = LlamaCppLM(gguf, n_threads=1)
    meta["quant"] = judge(m.logprobs_ids, ev)
    m.close()
    meta_path.write_text(json.dumps(meta, indent=1, default=str))
    return meta


def time_models(paths: dict[str, Path], threads: int, reps: int, prompt: list[int], lock: str) -> dict[str, dict]:
    from slimstack.quantize.backends.llamacpp import LlamaCppLM

    models = {k: LlamaCppLM(p, n_threads=threads) for k, p in paths.items()}
    for m in models.values():
        m.generate_ids(prompt, 8, ignore_eos=True)  # warm: map the file, build the graph
    fh = _timing_lock(lock)
    wall = {k: [] for k in models}
    cpu = {k: [] for k in models}
    try:
        for _ in range(reps):
            for k, m in models.items():
                t, c = time.perf_counter(), time.process_time()
                m.generate_ids(prompt, 128, ignore_eos=True)
                wall[k].append(128 / (time.perf_counter() - t))
                cpu[k].append(128 / max(time.process_time() - c, 1e-9))
    finally:
        if fh is not None:
            fh.close()
        for m in models.values():
            m.close()
    return {k: {"decode_tokens_per_s": float(np.median(wall[k])), "decode_cpu_tokens_per_s": float(np.median(cpu[k])),
                "decode_runs": [round(v, 1) for v in wall[k]], "decode_cpu_runs": [round(v, 1) for v in cpu[k]],
                "file_mb": paths[k].stat().st_size / 1e6} for k in paths}


def main(argv=None) -> int:
    args = parse_args("llm_fast", __doc__.splitlines()[0], argv, extra=_extra)
    import torch

    import slimstack as ss

    torch.set_num_threads(max(2, args.threads))  # building uses both cores; timing uses --threads
    steps = args.steps or (24 if args.quick else 200)
    tune = args.tune_steps or TUNE_STEPS[0 if args.quick else 1]
    reps = args.reps or (3 if args.quick else 5)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="slimstack-llm-fast-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    lm = ss.zoo.smollm2()
    ids = lm.tokenizer(eval_text())["input_ids"]
    chunks = eval_chunks(ids, 8 if args.quick else None)
    n_chunks = len(chunks)
    ev: dict[str, Any] = {"spread": eval_windows(ids), "chunks": chunks}
    ref_path = work / "ref.npz"
    saved = dict(np.load(ref_path)) if ref_path.exists() else {}
    if len(saved.get("chunks", ())) == n_chunks:
        ev["spread_refs"], ev["chunk_refs"] = list(saved["spread"]), list(saved["chunks"])
    else:
        ev["spread_refs"] = [lm.logprobs(np.asarray(w), max_tokens=len(w))[1] for w in ev["spread"]]
        ev["chunk_refs"] = [lm.logprobs(np.asarray(w), max_tokens=len(w))[1] for w in ev["chunks"]]
        np.savez(ref_path, spread=np.stack(ev["spread_refs"]), chunks=np.stack(ev["chunk_refs"]))
    texts = calibration_text(150_000 if args.quick else 400_000)
    calib, train = texts[: len(texts) // 2], texts[len(texts) // 2:]
    print(f"loaded in {time.time() - t0:.0f}s; {len(texts)} texts ({sum(map(len, texts))} chars)", flush=True)
    from slimstack.quantize.backends.llamacpp import LlamaCppLM

    paths: dict[str, Path] = {}
    rows: list[dict[str, Any]] = []
    for name, path in anchors(work, ["Q4_K_M", "Q4_0"]).items():
        key = f"llama.cpp {name}"
        paths[key] = path
        m = LlamaCppLM(path, n_threads=1)
        rows.append({"name": key, "kind": "anchor", **judge(m.logprobs_ids, ev)})
        m.close()
    for name, (cfg, qcfg) in pipelines(steps, args.quick, tune).items():
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        meta = build_pipeline(name, cfg, qcfg, lm, calib, train, work, ev)
        paths[name] = work / f"{slug(name)}.gguf"
        row = {"name": name, "kind": "slimstack", **meta["quant"], **{k: v for k, v in meta.items() if k != "quant"}}
        rows.append(row)
        print(f"{name}: kld {row['kld']:.4f} spread {row['kld_spread']:.3f} "
              f"(float {meta.get('float', {}).get('kld', 0):.3f}) {meta.get('notes')}", flush=True)
        write("llm_fast", args, rows, complete=False)
    if not args.no_cuts:
        for key, path in build_cuts(lm, work, calib[:1]).items():
            paths[key] = path
            rows.append({"name": key, "kind": "cut"})
    timing = time_models(paths, args.threads, reps, ids[:16], args.lock)
    speed_key = "decode_cpu_tokens_per_s" if args.threads == 1 else "decode_tokens_per_s"
    anchor = timing["llama.cpp Q4_K_M"][speed_key]
    for row in rows:
        row.update(timing[row["name"]])
        row["speed_vs_q4_k_m"] = row[speed_key] / anchor
        row["size_bytes"] = int(row["file_mb"] * 1e6)
        if "kld" in row:
            row["quality"], row["quality_metric"] = row["kld"], "kld"
    k4 = next(r for r in rows if r["name"] == "llama.cpp Q4_K_M")
    ours = [r for r in rows if r["kind"] == "slimstack"]
    met = [r["name"] for r in ours if r["speed_vs_q4_k_m"] >= 1.5 and r["kld"] <= k4["kld"]]
    fast = [r for r in ours if r["speed_vs_q4_k_m"] >= 1.5]
    best = min(fast, key=lambda r: r["kld"]) if fast else None
    summary = {
        "target_d": {"met": bool(met), "by": ", ".join(met) or "none", "q4_k_m_kld": k4["kld"],
                     "best_at_1.5x": best["name"] if best else None, "best_kld_at_1.5x": best["kld"] if best else None,
                     "gap_kld": (best["kld"] - k4["kld"]) if best else None},
        "speed": f"{speed_key} at {args.threads} thread(s), {reps} interleaved reps, batch 1, 128 new tokens",
        "eval": f"llama.cpp's protocol: {n_chunks} chunks of {CHUNK} tokens of torch's PyPI description (held out), "
                f"the last {CHUNK - CONTEXT} of each scored; *_spread: {N_EVAL} windows of {WINDOW} tokens spread over "
                "it, every position scored (the protocol of the first runs)",
        "train": f"pruning calibration, distillation ({steps} steps), GPTQ and scale distillation ({tune} steps) on "
                 "other packages' descriptions",
        "machine_note": os.environ.get("SLIMSTACK_BENCH_NOTE", ""),
    }
    write("llm_fast", args, rows, summary=summary, complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
