"""KLD / top-1 / perplexity of llm_fast's built files on all 17 chunks of the evaluation text.

The quick run of ``benchmarks/llm_fast.py`` scores 8 chunks; this scores every chunk (llama.cpp's
protocol: 512-token chunks, the last 256 scored) for the files a previous run left in ``--work``,
without building or timing anything.

Usage: PYTHONPATH=src python benchmarks/llm_fast_chunks.py --work /tmp/llm-fast [--out FILE.json] [NAME ...]
(NAME: a .gguf stem in the work folder; default the anchors and the target-(d) rows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_quant import CHUNK, eval_text, score  # noqa: E402

DEFAULT = ["llamacpp-Q4_K_M", "llamacpp-Q4_0", "IQ4_NL_Q8_0_mix____4_75_bpw__untied_head__GPTQ_",
           "IQ4_NL_Q8_0_mix____5_0_bpw__untied_head__GPTQ_", "IQ4_NL_everywhere__untied_head__GPTQ_",
           "Q4_0_everywhere__untied_head___distilled_scales"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="llm_fast.py's --work folder")
    p.add_argument("--out", default="", help="write the figures as JSON here")
    p.add_argument("names", nargs="*", default=DEFAULT)
    args = p.parse_args(argv)
    import torch

    import slimstack as ss
    from slimstack.quantize.backends.llamacpp import LlamaCppLM

    torch.set_num_threads(2)
    work = Path(args.work)
    missing = [n for n in args.names if not (work / f"{n}.gguf").exists()]
    if missing:
        print(f"not in {work}: {', '.join(missing)}; run benchmarks/llm_fast.py --work {work} first", file=sys.stderr)
        return 2
    lm = ss.zoo.smollm2()
    ids = lm.tokenizer(eval_text())["input_ids"]
    chunks = [ids[i * CHUNK:(i + 1) * CHUNK] for i in range(len(ids) // CHUNK)]
    refs = [lm.logprobs(np.asarray(w), max_tokens=len(w))[1] for w in chunks]
    rows = {}
    for name in args.names:
        m = LlamaCppLM(work / f"{name}.gguf", n_threads=2)
        r = score(SimpleNamespace(logprobs_ids=m.logprobs_ids), chunks, refs)
        m.close()
        rows[name] = {k: float(r[k]) for k in ("kld", "top1_agreement", "perplexity")}
        print(f"{name}: kld {rows[name]['kld']:.4f} top-1 {rows[name]['top1_agreement']:.3f} "
              f"perplexity {rows[name]['perplexity']:.2f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"chunks": len(chunks), "chunk_tokens": CHUNK, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
