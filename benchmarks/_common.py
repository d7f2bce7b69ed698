"""Shared plumbing for the benchmark scripts: arguments, machine description, JSON output.

Every script takes ``--quick`` (a subset that finishes within 3 minutes on 2 cores and measures
the same ratios) and ``--out FILE.json``, measures its variants interleaved in one process with the
thread count fixed, and writes ``{"benchmark", "machine", "rows": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def parse_args(name: str, description: str, argv: list[str] | None = None, extra=None) -> argparse.Namespace:
    """The common flags; ``extra(parser)`` adds a script's own."""
    p = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    if extra is not None:
        extra(p)
    p.add_argument("--quick", action="store_true", help="a subset that finishes within 3 minutes on 2 cores")
    p.add_argument("--out", type=Path, default=None, help=f"JSON output (default: benchmarks/results/{name}[-quick].json)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every variant (default 2)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = RESULTS / f"{name}{'-quick' if args.quick else ''}.json"
    return args


def machine(threads: int) -> dict[str, Any]:
    import numpy as np
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write(name: str, args: argparse.Namespace, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write the benchmark JSON atomically and print where it went."""
    payload = {"benchmark": name, "quick": bool(args.quick), "machine": machine(args.threads), "rows": rows, **extra}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_default))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return out


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
