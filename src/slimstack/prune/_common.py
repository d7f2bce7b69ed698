"""Checks and helpers shared by the network pruners: model kind, layer names, example inputs."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from .._arch import is_encoder  # noqa: F401  (the one check; re-exported for the recovery loop)
from ..errors import ShapeError, close_matches

__all__ = ["is_torch_encoder", "copy_model", "check_ignore", "example_inputs_for", "run_example", "weight_layers",
           "count_params", "failing_module"]

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_torch_encoder(model: Any) -> bool:
    """A sentence encoder (:func:`slimstack._arch.is_encoder`) that is a torch module around a Hugging Face
    transformer, so its layers can be cut and its ``model`` holds the weights (not an ONNX one)."""
    from .._arch import transformer_model_type

    inner = getattr(model, "model", None)
    return (isinstance(model, nn.Module) and is_encoder(model) and isinstance(inner, nn.Module)
            and transformer_model_type(inner) is not None)


def copy_model(model: nn.Module) -> nn.Module:
    """The copy a handler prunes (the caller's model is never changed)."""
    return copy.deepcopy(model)


def check_ignore(model: nn.Module, names: tuple[str, ...], field: str = "ignore") -> None:
    """Every name in ``ignore`` (or ``layer_ratios``) must be a module of ``model``; list near matches otherwise."""
    from ..errors import UnknownNameError

    known = [n for n, _ in model.named_modules() if n]
    for name in names:
        if name not in known:
            raise UnknownNameError(
                f"{field}: {name!r} is not a module of {type(model).__name__}.{close_matches(name, known) or ''} "
                f"Module names look like: {', '.join(known[:8])}{', ...' if len(known) > 8 else ''}")


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def count_params(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())
    return total, nonzero


def example_inputs_for(model: nn.Module, example_inputs: Any, data: Any) -> Any:
    """The inputs to trace with: given, or the first rows of ``data``; sentences are tokenized."""
    if example_inputs is None and data is not None:
        if getattr(data, "X", None) is not None:
            example_inputs = data.X[:2]
        elif is_torch_encoder(model):
            example_inputs = data.sentences()[:2]
    if example_inputs is None:
        if is_torch_encoder(model):
            example_inputs = ["slimstack prunes this sentence.", "A second one."]
        else:
            raise ShapeError(f"structured pruning of a {type(model).__name__} traces the model on example inputs; "
                             "pass example_inputs=x (a batch of real inputs, e.g. ds.X[:2]), calibration=ds or data=ds")
    if is_torch_encoder(model):
        if isinstance(example_inputs, str):
            example_inputs = [example_inputs]
        if isinstance(example_inputs, list | tuple) and all(isinstance(s, str) for s in example_inputs):
            return model.tokenize(list(example_inputs))
        return example_inputs
    if isinstance(example_inputs, np.ndarray):
        example_inputs = torch.as_tensor(np.ascontiguousarray(example_inputs))
    return example_inputs


@contextlib.contextmanager
def _module_stack(model: nn.Module) -> Iterator[list[str]]:
    """Track which modules are running, to name the one a failure happened in."""
    stack: list[str] = []

    def enter(name: str) -> None:
        stack.append(name)

    def leave(name: str) -> None:
        if stack and stack[-1] == name:
            stack.pop()

    handles = []
    for name, mod in model.named_modules():
        if name:
            handles.append(mod.register_forward_pre_hook(lambda m, a, n=name: enter(n)))
            handles.append(mod.register_forward_hook(lambda m, a, o, n=name: leave(n)))
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def run_example(model: nn.Module, example: Any) -> Any:
    """Run the model once on ``example``; a failure names the module and the input shape."""
    with _module_stack(model) as stack, torch.no_grad():
        try:
            return model(**example) if isinstance(example, dict) else model(example)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            where = f" in module {stack[-1]!r} ({type(model.get_submodule(stack[-1])).__name__})" if stack else ""
            shape = tuple(example.shape) if isinstance(example, torch.Tensor) else type(example).__name__
            raise ShapeError(f"{type(model).__name__} fails on example inputs of shape {shape}{where}: "
                             f"{str(exc).splitlines()[0]}. Pass example_inputs shaped like the model's real inputs "
                             "(e.g. ds.X[:2])") from exc


def failing_module(model: nn.Module, fn) -> str | None:
    """Run ``fn()`` (which runs the model); return the innermost module running when it raised."""
    with _module_stack(model) as stack:
        try:
            fn()
        except Exception:
            return stack[-1] if stack else None
    return None
