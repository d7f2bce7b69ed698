"""PyTorch modules as safetensors weights plus a JSON description that rebuilds them.

Two kinds of module rebuild from JSON alone: registered architectures (``get_config()`` kwargs,
see :func:`slimstack.io.register_architecture`) and trees of standard layers (``nn.Sequential``
of Linear, Conv, BatchNorm, activations, ...). After the rebuild, standard layers whose saved
weights have another shape (a structured-pruned model) are recreated at the saved shape, so pruned
models load without pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, ModelFileError
from ._architectures import architecture_of, build_architecture
from ._registry import register_format

__all__ = ["TorchFormat", "WEIGHTS", "module_spec", "build_from_spec", "resize_to_state", "save_state", "load_state",
           "load_weights"]

WEIGHTS = "model.safetensors"

# Standard layers: constructor arguments read back from attributes.
_LAYER_ARGS: dict[type, tuple[str, ...]] = {
    nn.Linear: ("in_features", "out_features", "bias"),
    nn.Conv1d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"),
    nn.Conv2d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"),
    nn.BatchNorm1d: ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    nn.BatchNorm2d: ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    nn.LayerNorm: ("normalized_shape", "eps", "elementwise_affine"),
    nn.Embedding: ("num_embeddings", "embedding_dim"),
    nn.Dropout: ("p",),
    nn.Flatten: ("start_dim", "end_dim"),
    nn.MaxPool2d: ("kernel_size", "stride", "padding"),
    nn.AvgPool2d: ("kernel_size", "stride", "padding"),
    nn.AdaptiveAvgPool2d: ("output_size",),
    nn.Softmax: ("dim",),
    nn.LogSoftmax: ("dim",),
    nn.ReLU: (), nn.GELU: (), nn.Tanh: (), nn.Sigmoid: (), nn.SiLU: (), nn.Identity: (), nn.LeakyReLU: ("negative_slope",),
}
_BY_NAME = {cls.__name__: cls for cls in _LAYER_ARGS}


def _arg(module: nn.Module, name: str) -> Any:
    value = getattr(module, name)
    if name == "bias" and not isinstance(value, bool):
        return value is not None
    if name == "padding" and isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return list(value)
    return value


def module_spec(module: nn.Module) -> dict[str, Any] | None:
    """The JSON description that rebuilds ``module``, or None if it cannot be described."""
    name = type(module).__name__
    arch = architecture_of(module)
    if arch is not None:
        return {"arch": arch, "kwargs": module.get_config()}
    if type(module) in _LAYER_ARGS:
        return {"layer": name, "args": {a: _arg(module, a) for a in _LAYER_ARGS[type(module)]}}
    if type(module) is nn.Sequential:
        children = [module_spec(c) for c in module]
        if any(c is None for c in children):
            return None
        return {"sequential": children}
    return None


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    if "arch" in spec:
        return build_architecture(spec["arch"], spec["kwargs"])
    if "layer" in spec:
        cls = _BY_NAME.get(spec["layer"])
        if cls is None:
            raise ModelFileError(f"unknown layer type {spec['layer']!r} in the saved description")
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["args"].items()}
        return cls(**args)
    if "sequential" in spec:
        return nn.Sequential(*[build_from_spec(c) for c in spec["sequential"]])
    raise ModelFileError(f"cannot rebuild a module from {sorted(spec)}; the description is corrupt")


def _resized(module: nn.Module, prefix: str, state: dict[str, torch.Tensor]) -> nn.Module | None:
    w = state.get(prefix + "weight")
    if w is None or not hasattr(module, "weight") or module.weight is None or module.weight.shape == w.shape:
        return None
    if isinstance(module, nn.Linear):
        return nn.Linear(w.shape[1], w.shape[0], bias=module.bias is not None)
    if isinstance(module, nn.Conv2d | nn.Conv1d):
        groups = module.groups
        if groups > 1:  # depthwise: groups follow the channel count
            groups = w.shape[0] if module.groups == module.out_channels else groups
        return type(module)(w.shape[1] * groups, w.shape[0], module.kernel_size, stride=module.stride,
                            padding=module.padding, dilation=module.dilation, groups=groups,
                            bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        return type(module)(w.shape[0], eps=module.eps, momentum=module.momentum, affine=module.affine,
                            track_running_stats=module.track_running_stats)
    if isinstance(module, nn.LayerNorm):
        return nn.LayerNorm(tuple(w.shape), eps=module.eps, elementwise_affine=module.elementwise_affine)
    if isinstance(module, nn.Embedding):
        return nn.Embedding(w.shape[0], w.shape[1])
    return None


def resize_to_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Recreate standard layers whose saved weight shape differs (structured pruning), in place."""
    for name, module in list(model.named_modules()):
        new = _resized(module, f"{name}." if name else "", state)
        if new is None:
            continue
        if not name:
            return new
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def save_state(module: nn.Module, file: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    save_file(state, str(file))


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """``load_state_dict(strict=True)`` with an error that names the saved model."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"weights in {str(where)!r} do not fit the saved description: {str(exc)[:300]}") from exc


def load_state(file: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.exists():
        raise ModelFileError(f"{str(file)!r} is missing; the saved model is incomplete, save it again")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{str(file)!r} is corrupt or truncated ({exc}); save the model again") from exc


@register_format("torch")
class TorchFormat:
    priority = 0

    @staticmethod
    def can_save(obj: Any) -> bool:
        return isinstance(obj, nn.Module) and module_spec(obj) is not None

    @staticmethod
    def save(obj: nn.Module, directory: Path) -> dict[str, Any]:
        save_state(obj, directory / WEIGHTS)
        return {"module": module_spec(obj), "training": obj.training}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> nn.Module:
        state = load_state(directory / WEIGHTS)
        model = resize_to_state(build_from_spec(spec["module"]), state)
        load_weights(model, state, directory)
        return model.train(spec.get("training", False))


def require_saveable(model: nn.Module) -> None:
    if module_spec(model) is None:
        raise ModelError(
            f"{type(model).__name__} cannot be rebuilt from JSON; decorate its class with "
            "@ss.zoo.register_architecture and give it get_config() returning its constructor kwargs"
        )
