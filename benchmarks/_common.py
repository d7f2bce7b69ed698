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


# -- the shared harness: threads, interleaved timing through ss.compare, size as ss.save writes it, tables ----
def pinned(threads: int | None):
    """Every thread pool (BLAS, OpenMP, torch) fixed at ``threads`` inside the block."""
    from slimstack._utils import threads as _threads

    return _threads(threads)


def _adapter_base():
    from slimstack.measure import ModelAdapter

    return ModelAdapter


class Batched(_adapter_base()):
    """``model`` predicting all of the timed rows in calls of ``batch`` rows (its own ss.measure adapter inside).

    ``ss.compare`` times one call on one prepared batch; a cascade's cost depends on which rows it
    sees, so the hierarchical benchmark times whole test sets split into 256-row calls.
    """

    def __init__(self, model: Any, batch: int):
        from slimstack.measure import adapt

        super().__init__(model)
        self.inner, self.batch = adapt(model), int(batch)
        self.kind, self.output = self.inner.kind, self.inner.output

    def prepare(self, inputs: Any) -> Any:
        return self.inner.prepare(inputs)

    def run(self, prepared: Any) -> Any:
        return [self.inner.run(prepared[i:i + self.batch]) for i in range(0, len(prepared), self.batch)]

    def threads(self, n: int | None):
        return self.inner.threads(n)

    def size_bytes(self) -> int | None:
        return self.inner.size_bytes()


class Call(_adapter_base()):
    """A plain function ``fn(x)`` timed by ``ss.compare`` (e.g. averaging several models' outputs)."""

    kind = "function"
    output = "proba"

    def __init__(self, fn, *, to_tensor: bool = False):
        super().__init__(fn)
        self.to_tensor = to_tensor

    def prepare(self, inputs: Any) -> Any:
        import numpy as np

        x = np.ascontiguousarray(inputs)
        if self.to_tensor:
            import torch

            return torch.as_tensor(x)
        return x

    def run(self, prepared: Any) -> Any:
        if self.to_tensor:
            import torch

            with torch.inference_mode():
                return self.model(prepared)
        return self.model(prepared)

    def size_bytes(self) -> None:
        return None


def timed(models: dict[str, Any], X, *, batch: int, threads: int | None, runs: int, warmup: int = 2,
          whole: bool = False) -> dict[str, dict[str, float]]:
    """Interleaved latency through ``ss.compare`` (rotating order, cool-down between calls, median of ``runs``).

    ``whole=False``: one call on ``batch`` rows (the first rows of ``X``, cycled). ``whole=True``: all of
    ``X`` predicted in calls of ``batch`` rows per timed run. Returns per model ``latency_ms`` (one call
    of ``batch`` rows) and ``cost_ms_per_sample``.
    """
    import numpy as np

    import slimstack as ss

    X = np.asarray(X)
    rows = len(X) if whole else batch
    models = {n: Batched(m, batch) for n, m in models.items()} if whole else models
    ds = ss.datasets.from_arrays(X, np.zeros(len(X), dtype=int), name="timed")
    c = ss.compare(models, ds, batch_size=rows, threads=threads, warmup=warmup, runs=runs, quality=False, cost=False)
    calls = -(-rows // batch)
    return {n: {"latency_ms": c[n].latency_ms / calls, "cost_ms_per_sample": c[n].latency_ms / rows} for n in models}


def size_bytes(model: Any) -> int | None:
    """Bytes on disk as ``ss.save`` writes ``model``; None, with the reason printed, when ss.save cannot save it."""
    from slimstack.measure import adapt

    try:
        return adapt(model).size_bytes()
    except Exception as exc:  # skops raises many types for objects it cannot serialise
        print(f"size: ss.save cannot save {type(model).__name__} ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:120]}); size_bytes left empty", flush=True)
        return None


def fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return format(v, spec)
    if isinstance(v, int) and v >= 10_000:
        return f"{v:,}"
    return str(v).replace("|", "/")


def table(rows: list[dict[str, Any]], columns: list) -> str:
    """One Markdown table: ``columns`` are keys, ``(key, header)`` or ``(key, header, spec_or_fn)``.

    ``spec_or_fn`` is a format spec (".3f") or a function of the whole row. Every *_table.py uses this.
    """
    cols = [(c, c, ".4g") if isinstance(c, str) else (*c, ".4g")[:3] for c in columns]
    def numeric(key: str, spec) -> bool:  # right-aligned: formatted numbers
        return not callable(spec) and spec != "" and any(
            isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool) for r in rows)

    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |",
             "|" + "|".join("---:" if numeric(k, s) else "---" for k, _, s in cols) + "|"]
    for r in rows:
        cells = [s(r) if callable(s) else fmt(r.get(k), s) for k, _, s in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
