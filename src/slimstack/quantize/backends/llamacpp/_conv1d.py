"""GPT-2-family models keep their projections in transformers' ``Conv1D`` (a Linear with the weight
transposed). Quantization works on ``nn.Linear``, so a copy of such a model gets each ``Conv1D``
replaced by the equal ``nn.Linear`` first; without this every projection was skipped and the
"quantized" model was the float one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["has_conv1d", "conv1d_as_linear"]


def _is_conv1d(m: nn.Module) -> bool:
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and getattr(m, "weight", None) is not None


def has_conv1d(model: nn.Module) -> bool:
    return any(_is_conv1d(m) for m in model.modules())


def conv1d_as_linear(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``Conv1D`` (weight ``(in, out)``) as an equal ``nn.Linear``."""
    out = copy.deepcopy(model)
    for name, m in list(out.named_modules()):
        if not _is_conv1d(m):
            continue
        w = m.weight.detach()
        lin = nn.Linear(w.shape[0], w.shape[1], bias=m.bias is not None, dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w.t())
            if m.bias is not None:
                lin.bias.copy_(m.bias.detach())
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, child, lin)
    return out.eval()
