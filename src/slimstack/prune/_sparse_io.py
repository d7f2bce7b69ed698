"""A save format for sparse models whose file really shrinks: surviving values plus a bitmask.

Pruned weights are stored as two safetensors entries, ``<name>::values`` (the nonzeros in
row-major order) and ``<name>::mask`` (one bit per weight, packed); everything else is stored
dense. At 80% sparsity a float32 layer takes 0.2 * 4 + 1/8 bytes per weight instead of 4
(23%). Models carry a marker (set by ``MagnitudePruning``/``NMPruning``) naming the pruned
tensors; the format outranks "torch" and "sentence_encoder" for such models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelFileError
from ..io import build_from_spec, load_state, module_spec, register_format, resize_to_state

__all__ = ["mark_sparse", "sparsity_marker", "pack", "unpack", "SparseFormat"]

MARKER = "_slimstack_sparsity"
FILE = "sparse.safetensors"


def mark_sparse(model: nn.Module, method: str, tensors: list[str], **info: Any) -> None:
    """Record on ``model`` which tensors are sparse, so ``ss.save`` stores them compactly."""
    setattr(model, MARKER, {"method": method, "tensors": list(tensors), **info})


def sparsity_marker(model: Any) -> dict[str, Any] | None:
    """The marker :func:`mark_sparse` set (method and sparse tensor names), or None."""
    return getattr(model, MARKER, None) if isinstance(model, nn.Module) else None


def pack(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(nonzero values, packed bitmask) of ``tensor``."""
    t = tensor.detach().contiguous()
    mask = t != 0
    bits = np.packbits(mask.flatten().numpy())
    return t[mask].clone(), torch.from_numpy(bits)


def unpack(values: torch.Tensor, bits: torch.Tensor, shape: list[int], name: str = "tensor") -> torch.Tensor:
    numel = int(np.prod(shape))
    mask = np.unpackbits(bits.numpy(), count=numel).astype(bool)
    if int(mask.sum()) != values.numel():
        raise ModelFileError(f"sparse tensor {name!r}: the bitmask marks {int(mask.sum())} values but "
                             f"{values.numel()} are stored; the file is corrupt, save the model again")
    dense = torch.zeros(numel, dtype=values.dtype)
    dense[torch.from_numpy(mask)] = values
    return dense.view(shape)


def _encode(state: dict[str, torch.Tensor], sparse: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    out, shapes = {}, {}
    for key, value in state.items():
        if key in sparse:
            out[f"{key}::values"], out[f"{key}::mask"] = pack(value)
            shapes[key] = list(value.shape)
        else:
            out[key] = value.detach().contiguous().clone()
    return out, shapes


def _decode(stored: dict[str, torch.Tensor], shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    state = {k: v for k, v in stored.items() if "::" not in k}
    for key, shape in shapes.items():
        try:
            state[key] = unpack(stored[f"{key}::values"], stored[f"{key}::mask"], shape, key)
        except KeyError as exc:
            raise ModelFileError(f"sparse tensor {key!r} is missing from {FILE}; save the model again") from exc
    return state


@register_format("sparse")
class SparseFormat:
    """Models marked sparse: rebuild description (torch spec or encoder config) plus values and bitmasks."""

    priority = 30

    @staticmethod
    def can_save(obj: Any) -> bool:
        from ..zoo import SentenceEncoder

        marker = sparsity_marker(obj)
        return marker is not None and (type(obj) is SentenceEncoder or module_spec(obj) is not None)

    @staticmethod
    def save(obj: nn.Module, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        from ..zoo import SentenceEncoder
        from ._encoder_io import save_skeleton

        marker = sparsity_marker(obj)
        stored, shapes = _encode(obj.state_dict(), marker["tensors"])
        save_file(stored, str(directory / FILE))
        spec: dict[str, Any] = {"file": FILE, "sparse": shapes, "marker": marker, "training": obj.training}
        if type(obj) is SentenceEncoder:
            spec["encoder"] = save_skeleton(obj, directory, weights=False)
        else:
            spec["module"] = module_spec(obj)
        return spec

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> nn.Module:
        from ..io import load_weights
        from ._encoder_io import build_skeleton

        state = _decode(load_state(directory / spec.get("file", FILE)), spec["sparse"])
        if "encoder" in spec:
            model = build_skeleton(directory, spec["encoder"])
        else:
            model = resize_to_state(build_from_spec(spec["module"]), state)
        load_weights(model, state, directory)
        marker = spec.get("marker") or {}
        mark_sparse(model, marker.get("method", "unknown"), list(spec["sparse"]),
                    **{k: v for k, v in marker.items() if k not in ("method", "tensors")})
        return model.train(spec.get("training", False))
