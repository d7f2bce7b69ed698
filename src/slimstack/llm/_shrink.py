"""``ss.zoo.shrink(lm, layers=k)``: a causal LM with fewer decoder layers, initialised from its own.

Which layers to keep: an even spread that keeps the first and the last (``spread_layers``), or an
explicit list (e.g. chosen by measured block importance). Embeddings, final norm and the LM head
are kept (tied embeddings stay tied); the input model is never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import ConfigError, ModelError
from ._causal_lm import CausalLM

__all__ = ["shrink_lm", "decoder_layers"]

_LAYER_PATHS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers", "transformer.blocks")
_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ``nn.ModuleList`` of decoder blocks of a transformers causal LM, and its attribute path."""
    for path in _LAYER_PATHS:
        try:
            layers = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList):
            return path, layers
    raise ModelError(f"cannot find the decoder layers of a {type(model).__name__} (looked for "
                     f"{', '.join(_LAYER_PATHS)}); pass a Llama, Qwen2, Mistral, Phi or GPT-2 family model")


def shrink_lm(lm: CausalLM, layers: int | Sequence[int]) -> CausalLM:
    from ..zoo import spread_layers

    _, old = decoder_layers(lm.model)
    n = len(old)
    if isinstance(layers, int) and not isinstance(layers, bool):
        if not 1 <= layers <= n:
            raise ConfigError(f"layers={layers} must be between 1 and {n} (the model's decoder layers)")
        keep = spread_layers(n, layers)
    else:
        keep = sorted({int(i) for i in layers})
        if not keep or keep[0] < 0 or keep[-1] >= n:
            raise ConfigError(f"layers={list(layers)} must name decoder layers 0..{n - 1}")
    model = copy.deepcopy(lm.model)
    path, blocks = decoder_layers(model)
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, nn.ModuleList([blocks[i] for i in keep]))
    for new_idx, block in enumerate(getattr(parent, attr)):
        for module in block.modules():  # the KV cache is indexed by each attention's layer_idx
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    cfg = model.config
    for key in _COUNT_KEYS:
        if hasattr(cfg, key) and isinstance(getattr(cfg, key), int):
            setattr(cfg, key, len(keep))
    if isinstance(getattr(cfg, "layer_types", None), list) and len(cfg.layer_types) == n:
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    out = CausalLM(model, copy.deepcopy(lm.tokenizer), name=f"{lm.name} ({len(keep)} of {n} layers)")
    out.shrink_record = {"kept_layers": keep, "dropped_layers": [i for i in range(n) if i not in keep]}
    return out
