"""``slimstack demo``: the showcase on built-in data and models.

Trains the digits CNN and MLP, saves and reloads them through the safe format, measures them
side by side (interleaved timing) and prints the table. Later capabilities (pruning, quantization,
distillation, ensembles) add their steps here.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

__all__ = ["run_demo"]


def run_demo(out: str | Path | None = None, threads: int = 2, console: Console | None = None) -> dict:
    import torch

    from . import datasets, io, zoo
    from .measure import compare

    console = console or Console(width=max(Console().width, 150))
    torch.set_num_threads(threads)
    train, val, test = (datasets.load("digits", split=s, seed=0) for s in ("train", "val", "test"))
    console.print(f"[bold]slimstack demo[/bold]: digits ({len(train)} train / {len(val)} val / {len(test)} test), "
                  f"{threads} threads")
    models: dict[str, torch.nn.Module] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("training", total=2)
        for name, build, epochs in (("cnn", zoo.digits_cnn, 15), ("mlp", zoo.digits_mlp, 40)):
            progress.update(task, description=f"training digits {name}")
            models[name] = zoo.train(build(), train, epochs=epochs, val=val, seed=0)
            progress.advance(task)
    with tempfile.TemporaryDirectory() as tmp:  # round-trip through the safe format before measuring
        for name, model in list(models.items()):
            io.save(model, Path(tmp) / name)
            models[name] = io.load(Path(tmp) / name)
    console.print("measuring (quality, size, MACs, peak memory; latency interleaved A B A B ...)")
    comparison = compare(models, test, batch_size=256, threads=threads, runs=30, progress=True)
    console.print(comparison.rich_table())
    result = comparison.to_dict()
    if out is not None:
        from ._utils import atomic_file

        path = Path(out) / "demo.json"
        with atomic_file(path) as fh:
            json.dump(result, fh, indent=2)
        console.print(f"wrote {path}")
    return result
