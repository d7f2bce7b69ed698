"""Sentence encoders whose layers were pruned to different sizes: rebuild from JSON, no pickle.

Hugging Face configs hold one head count and one FFN width for every layer, so a BERT whose
layers lost different numbers of heads or FFN neurons cannot be rebuilt by ``from_pretrained``.
The "pruned_encoder" format saves the usual ``save_pretrained`` files plus the per-layer sizes,
rebuilds the model from its config, resizes each layer, then loads the safetensors weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFileError
from ..io import load_state, load_weights, register_format


__all__ = ["layer_sizes", "is_resized", "resize_layers", "save_skeleton", "build_skeleton", "PrunedEncoderFormat"]


def _stack(hf_model: nn.Module):
    from .._arch import find_stack

    return find_stack(hf_model, required=True, what="the pruned-encoder format")


def layer_sizes(encoder: Any) -> dict[str, list[int]]:
    """Heads and FFN neurons left in each transformer layer."""
    stack = _stack(encoder.model)
    layers = list(stack.layers())
    return {"heads": [stack.heads(l) for l in layers], "ffn": [stack.ffn_width(l) for l in layers]}


def is_resized(encoder: Any) -> bool:
    from .._arch import FAMILIES, transformer_model_type

    if transformer_model_type(encoder.model) not in FAMILIES:
        return False
    heads, ffn = _stack(encoder.model).config_sizes()
    sizes = layer_sizes(encoder)
    return any(h != heads for h in sizes["heads"]) or any(f != ffn for f in sizes["ffn"])


def _linear(old: nn.Linear, out_f: int, in_f: int) -> nn.Linear:
    return nn.Linear(in_f, out_f, bias=old.bias is not None, dtype=old.weight.dtype)


def resize_layers(hf_model: nn.Module, heads: list[int], ffn: list[int]) -> None:
    """Recreate each layer's projections at the given head count and FFN width (weights uninitialised)."""
    stack = _stack(hf_model)
    layers = list(stack.layers())
    if len(heads) != len(layers) or len(ffn) != len(layers):
        raise ModelFileError(f"the saved sizes describe {len(heads)} layers but the config builds {len(layers)}")
    for layer, h, f in zip(layers, heads, ffn, strict=True):
        hidden, width = stack.get(layer, "q").in_features, h * stack.head_dim(layer)
        for proj in ("q", "k", "v"):
            stack.put(layer, proj, _linear(stack.get(layer, proj), width, hidden))
        stack.put(layer, "o", _linear(stack.get(layer, "o"), hidden, width))
        stack.set_heads(layer, h)
        stack.put(layer, "fc1", _linear(stack.get(layer, "fc1"), f, hidden))
        stack.put(layer, "fc2", _linear(stack.get(layer, "fc2"), hidden, f))


def save_skeleton(encoder: Any, directory: Path, *, weights: bool) -> dict[str, Any]:
    """Config and tokenizer (plus ``save_pretrained`` weights if ``weights``) and the per-layer sizes."""
    target = directory / "encoder"
    if weights:
        encoder.model.save_pretrained(str(target), safe_serialization=True)
    else:
        encoder.model.config.save_pretrained(str(target))
    encoder.tokenizer.save_pretrained(str(target))
    return {"encoder": "encoder", **encoder.get_config(), **layer_sizes(encoder)}


def build_skeleton(directory: Path, spec: dict[str, Any]) -> Any:
    """The encoder described by ``spec``, at its pruned sizes, with weights still to be loaded."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from ..zoo import SentenceEncoder

    path = directory / spec.get("encoder", "encoder")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read the encoder config in {str(path)!r}: {exc}") from exc
    model = AutoModel.from_config(config, attn_implementation="sdpa")
    resize_layers(model, spec["heads"], spec["ffn"])
    kw = {k: spec[k] for k in ("max_length", "pooling", "normalize") if k in spec}
    return SentenceEncoder(model.eval(), tokenizer, **kw).eval()


@register_format("pruned_encoder")
class PrunedEncoderFormat:
    """Sentence encoders with per-layer head counts or FFN widths (structured pruning)."""

    priority = 20

    @staticmethod
    def can_save(obj: Any) -> bool:
        from ..zoo import SentenceEncoder

        return type(obj) is SentenceEncoder and is_resized(obj)

    @staticmethod
    def save(obj: Any, directory: Path) -> dict[str, Any]:
        return save_skeleton(obj, directory, weights=True)

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> Any:
        enc = build_skeleton(directory, spec)
        file = directory / spec.get("encoder", "encoder") / "model.safetensors"
        load_weights(enc.model, load_state(file), file)
        return enc
