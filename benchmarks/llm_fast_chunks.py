"""KLD / top-1 / perplexity of llm_fast's built files on all 17 chunks of the evaluation text.

The quick run of ``benchmarks/llm_fast.py`` scores 8 chunks; this scores every chunk (llama.cpp's
protocol: 512-token chunks, the last 256 scored) for the files a previous run left in ``--work``,
without building or timing anything.

Usage: PYTHONPATH=src python benchmarks/llm_fast_chunks.py --work /tmp/llm-fast [--out FILE.json] [ROW ...]
(ROW: an llm_fast row name, e.g. "llama.cpp Q4_K_M"; default the anchors and the target-(d) rows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_fast import slug  # noqa: E402
from llm_quant import eval_chunks, eval_text, score  # noqa: E402

DEFAULT = ["llama.cpp Q4_K_M", "llama.cpp Q4_0", "IQ4_NL/Q8_0 mix <= 4.75 bpw, untied head (GPTQ)",
           "IQ4_NL/Q8_0 mix <= 5.0 bpw, untied head (GPTQ)", "IQ4_NL everywhere, untied head (GPTQ)",
           "Q4_0 everywhere, untied head + distilled scales"]


def gguf_path(work: Path, row: str) -> Path:
    """Where llm_fast.py left a row's file: the anchors as anchors() names them, the rest by slug."""
    return work / (f"llamacpp-{row.removeprefix('llama.cpp ')}.gguf" if row.startswith("llama.cpp ")
                   else f"{slug(row)}.gguf")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="llm_fast.py's --work folder")
    p.add_argument("--out", default="", help="write the figures as JSON here")
    p.add_argument("rows", nargs="*", default=DEFAULT)
    args = p.parse_args(argv)
    import torch

    import slimstack as ss
    from slimstack.quantize.backends.llamacpp import LlamaCppLM

    torch.set_num_threads(2)
    work = Path(args.work)
    missing = [r for r in args.rows if not gguf_path(work, r).exists()]
    if missing:
        print(f"not in {work}: {', '.join(missing)}; run benchmarks/llm_fast.py --work {work} first", file=sys.stderr)
        return 2
    lm = ss.zoo.smollm2()
    chunks = eval_chunks(lm.tokenizer(eval_text())["input_ids"])
    refs = [lm.logprobs(np.asarray(w), max_tokens=len(w))[1] for w in chunks]
    rows = {}
    for row in args.rows:
        m = LlamaCppLM(gguf_path(work, row), n_threads=2)
        r = score(SimpleNamespace(logprobs_ids=m.logprobs_ids), chunks, refs)
        m.close()
        rows[row] = {k: float(r[k]) for k in ("kld", "top1_agreement", "perplexity")}
        print(f"{row}: kld {rows[row]['kld']:.4f} top-1 {rows[row]['top1_agreement']:.3f} "
              f"perplexity {rows[row]['perplexity']:.2f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"chunks": len(chunks), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
