"""``slimstack run``: run a recipe's steps, measure every intermediate model, write the report.

Each finished step's model is saved (atomically) under ``OUT/artifacts/`` and recorded in
``OUT/state.json`` together with a hash of everything that produced it. Re-running the same recipe
into the same folder loads the finished steps and goes on after the last one; a changed step and
every step after it run again. A killed run leaves no half-written artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import datasets, io
from .._utils import seed_everything
from ..errors import ConfigError, ModelError
from ._outdir import STATE, OutDir
from ._schema import Recipe, load_recipe
from ._record import plain
from ._steps import StepContext, run_step

__all__ = ["run_recipe", "prepare", "load_model", "load_data", "STATE"]


def load_data(recipe: Recipe) -> dict[str, datasets.Dataset]:
    spec = recipe.data
    splits = ("train", "test", "test") if spec.name == "stsb" else ("train", "val", "test")
    out = {}
    for key, split in zip(("train", "val", "test"), splits):
        ds = datasets.load(spec.name, split=split, seed=spec.seed, target=spec.target,
                           **({"window": spec.window} if spec.window else {}))
        if spec.flat:
            ds = ds.flat()
        if key == "test" and spec.limit:
            ds = ds.head(spec.limit)
        out[key] = ds
    if spec.name == "stsb":  # STS-B ships no validation split: hold out 500 train pairs, seeded
        import numpy as np

        order = np.random.default_rng(spec.seed).permutation(len(out["train"]))
        out["val"], out["train"] = out["train"].subset(np.sort(order[:500])), out["train"].subset(np.sort(order[500:]))
    return out


def load_model(recipe: Recipe, data: dict[str, datasets.Dataset]) -> Any:
    from .. import zoo

    spec = recipe.model
    if spec.path is not None:
        return io.load(spec.path, trusted=spec.trusted)
    if spec.estimator is not None:
        from ._combine import build_member

        est = build_member({"estimator": spec.estimator, "params": spec.params, "scale": spec.scale}, None, None)
        train = data["train"]
        return est.fit(train.X.reshape(len(train.X), -1), train.y)
    builders = {"digits_cnn": zoo.digits_cnn, "digits_mlp": zoo.digits_mlp, "digits_resnet": zoo.digits_resnet,
                "minilm": zoo.minilm, "smollm2": zoo.smollm2}
    if spec.zoo not in builders:
        from ..errors import unknown_name

        raise unknown_name("zoo model", spec.zoo, builders)
    if spec.zoo in ("minilm", "smollm2"):  # pretrained: nothing to train
        return builders[spec.zoo]()
    model = builders[spec.zoo](seed=spec.train.seed if spec.train else 0)
    if spec.train is not None:
        model = zoo.train(model, data["train"], epochs=spec.train.epochs, lr=spec.train.lr, seed=spec.train.seed,
                          val=data["val"])
    return model


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare(recipe: Recipe, od: OutDir, console: Console) -> tuple[dict, Any, StepContext, dict]:
    """Load data and the original model (from OUT when a previous run already built it)."""
    data = load_data(recipe)
    state = od.state
    origin_hash = _hash(recipe.model.model_dump(), recipe.data.model_dump())
    original_rel = "artifacts/00-original"
    original_dir = od.out / original_rel
    if state.get("original") == origin_hash and original_dir.exists() and od.owns(original_rel):
        model = io.load(original_dir, trusted=recipe.model.trusted)
        console.print("original model: loaded from the previous run")
    else:
        model = load_model(recipe, data)
        _check_fits(model, data["test"])
        for s in state["steps"]:  # every step artifact was built from another original
            od.remove(s["artifact"])
        state.update(original=origin_hash, steps=[])
        od.remove(original_rel)
        od.save_state()
        try:
            io.save(model, od.claim(original_rel))
        except ModelError:
            pass  # e.g. a prefit object no safe format can hold; it is rebuilt on resume
    example = data["train"].inputs[:1] if data["train"].X is not None else None
    ctx = StepContext(original=model, train=data["train"], val=data["val"], test=data["test"],
                      example_inputs=None if example is None else _tensor(example), seed=recipe.data.seed,
                      threads=recipe.measure.threads)
    return data, model, ctx, state


def _tensor(x: Any) -> Any:
    import torch

    return torch.as_tensor(x)


def _check_fits(model: Any, test: datasets.Dataset) -> None:
    from ..measure import compare

    compare({"model": model}, test.head(min(8, len(test))), runs=1, warmup=0, cost=False, threads=None)


def run_recipe(source: Any, out: str | Path, console: Console | None = None, *, force: bool = False) -> dict[str, Any]:
    """Run a recipe into ``out`` and return the report (also written as report.json and report.html).

    OUT is locked for the run; files slimstack did not write there are never overwritten (``force``
    lets it replace them at the paths it writes); the previous report is removed before anything
    changes, so a killed run leaves no report that describes other artifacts than those beside it.
    """
    console = console or Console()
    recipe = source if isinstance(source, Recipe) else load_recipe(source)
    with OutDir(out, force=force, command="run") as od, _kept_global_rng():
        od.drop_reports()
        return _run(recipe, od, console)


@contextlib.contextmanager
def _kept_global_rng() -> Iterator[None]:
    """The run seeds the global generators for determinism; the caller's own streams come back after it."""
    import random

    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _run(recipe: Recipe, od: OutDir, console: Console) -> dict[str, Any]:
    from ..report import build_report, write_report

    out = od.out
    seed_everything(recipe.data.seed)
    data, model, ctx, state = prepare(recipe, od, console)
    models: dict[str, Any] = {"original": model}
    step_info: list[dict[str, Any]] = []
    base_hash = state["original"]
    for i, (kind, fields) in enumerate(recipe.step_list(), start=1):
        h = _hash(base_hash, [s for s in recipe.steps[:i]])
        name = f"{i:02d}-{kind}"
        rel = f"artifacts/{name}"
        art = out / rel
        done = next((s for s in state["steps"] if s["index"] == i and s["hash"] == h), None)
        if done is not None and art.exists() and od.owns(rel):
            model = io.load(art)  # untrusted like any file: a file dropped into OUT must not run code
            console.print(f"step {i} {kind}: done in a previous run, loaded")
            info = done
        else:
            for stale in [s for s in state["steps"] if s["index"] >= i]:  # this step and later ones change
                od.remove(stale["artifact"])
            od.remove(rel)  # ours from a run killed between saving it and recording it
            state["steps"] = [s for s in state["steps"] if s["index"] < i]
            od.save_state()
            console.print(f"step {i} {kind} ({(fields or {}).get('method', '')}) ...")
            t0 = time.perf_counter()
            with console.status(f"running step {i}: {kind}"):
                model, record = run_step(kind, fields or {}, model, ctx)
            info = {"index": i, "kind": kind, "method": (fields or {}).get("method"), "fields": plain(fields or {}),
                    "hash": h, "seconds": round(time.perf_counter() - t0, 2), "record": plain(record),
                    "artifact": rel}
            io.save(model, od.claim(rel))
            state["steps"].append(info)
            od.save_state()
        models[name] = model
        step_info.append(info)
    console.print("measuring every model side by side (interleaved) ...")
    m = recipe.measure
    from ..measure import compare

    lm = data["test"].task == "lm"  # causal LMs: KLD and top-1 agreement against the original
    comparison = compare(models, data["test"], batch_size=m.batch_size, threads=m.threads, runs=m.runs,
                         warmup=m.warmup, progress=True, reference=models["original"] if lm else None)
    report = build_report(recipe, comparison.to_dict()["rows"], comparison.baseline, step_info)
    for rel in ("report.json", "report.html"):
        od.claim(rel)
    write_report(report, out)
    console.print(comparison.rich_table())
    console.print(f"report: {out / 'report.html'}")
    return report


def validate_recipe(source: Any) -> Recipe:
    """Load a recipe strictly and check what ``run`` would check before its first step: the files it names exist."""
    recipe = load_recipe(source)
    if not recipe.steps and recipe.search is None:
        raise ConfigError("the recipe has no steps; add e.g. `steps: [{quantize: {method: DynamicInt8}}]`")
    if recipe.model.path is not None and not Path(recipe.model.path).exists():
        raise ConfigError(f"model.path {recipe.model.path!r} does not exist; name a folder written by ss.save, a "
                          "Hugging Face directory, an .onnx or a .skops file (relative to the recipe's folder)")
    from ..datasets import TEXT_BUILTIN

    builtin = sorted({*datasets.BUILTIN, *TEXT_BUILTIN})  # text for LMs too (pytorch_readme)
    if recipe.data.name not in builtin and not Path(recipe.data.name).exists():
        from ..errors import close_matches

        raise ConfigError(f"data.name {recipe.data.name!r} is neither a built-in data set ("
                          f"{', '.join(builtin)}) nor an existing file (relative to the recipe's "
                          f"folder).{close_matches(recipe.data.name, builtin)}")
    return recipe
