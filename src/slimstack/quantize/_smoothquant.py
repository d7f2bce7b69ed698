"""SmoothQuant: move activation outliers into the weights before int8 quantization.

Transformer activations have a few channels with values 10-100x the rest, so one per-tensor int8
scale wastes most of its range on them. For ``y = x W^T`` and a per-input-channel factor ``s``,
``y = (x / s)(W s)^T``: dividing the activations by ``s`` flattens the outliers and the weights
(quantized per output channel) absorb them. Xiao et al. (2023) choose
``s_j = max|x_j|^alpha / max|W_j|^(1 - alpha)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["smooth_factors"]


def smooth_factors(linear: nn.Linear, channel_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-input-channel factors ``s`` (shape ``(in_features,)``) for ``linear`` given its input's |max|."""
    w_max = linear.weight.detach().float().abs().amax(dim=0).clamp(min=1e-5)
    a_max = channel_absmax.float().clamp(min=1e-5)
    s = a_max.pow(alpha) / w_max.pow(1.0 - alpha)
    return s.clamp(min=1e-5, max=1e5)
