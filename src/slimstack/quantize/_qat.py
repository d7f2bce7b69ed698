"""Quantization-aware training: train through fake int8 rounding, then convert to real int8 modules.

``FakeQuant`` wraps a Linear or Conv2d: the weight is rounded to int8 per output channel and the
input to uint8 with a running (EMA) min-max range, both with the straight-through estimator
(``x + (round(x) - x).detach()``), so the optimizer sees the rounding error in the loss but gets
the identity gradient. :func:`convert_qat` swaps each wrapper for the module StaticInt8 produces.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._supervised import SupervisedObjective
from .._training import Trainer, TrainSettings
from .._utils import seed_everything
from ..datasets import Dataset
from ..errors import DataError
from .backends.torch._convert import set_module
from .backends.torch._kernels import weight_qmax
from .backends.torch._modules import QuantConv2d, QuantLinear

__all__ = ["FakeQuant", "prepare_qat", "train_qat", "convert_qat"]


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class FakeQuant(nn.Module):
    """Simulates int8 weights and uint8 inputs of ``layer`` in float, differentiably (STE)."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, momentum: float = 0.1):
        super().__init__()
        self.layer, self.momentum = layer, momentum
        self.register_buffer("act_min", torch.zeros(()))
        self.register_buffer("act_max", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def qparams(self) -> tuple[float, int]:
        lo, hi = min(float(self.act_min), 0.0), max(float(self.act_max), 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        return scale, int(np.clip(round(-lo / scale), 0, 255))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                if not bool(self.initialised):
                    self.act_min.copy_(lo), self.act_max.copy_(hi), self.initialised.fill_(True)
                else:
                    self.act_min.lerp_(lo, self.momentum), self.act_max.lerp_(hi, self.momentum)
        scale, zp = self.qparams()
        xq = (torch.clamp(_ste_round(x / scale) + zp, 0, 255) - zp) * scale
        w = self.layer.weight
        qmax = weight_qmax()  # the range the converted int8 module will use on this CPU
        w_scale = (w.detach().reshape(w.shape[0], -1).abs().amax(dim=1) / float(qmax)).clamp(min=1e-12)
        shape = (-1,) + (1,) * (w.dim() - 1)
        wq = torch.clamp(_ste_round(w / w_scale.view(shape)), -qmax, qmax) * w_scale.view(shape)
        if isinstance(self.layer, nn.Conv2d):
            c = self.layer
            return nn.functional.conv2d(xq, wq, c.bias, c.stride, c.padding, c.dilation, c.groups)
        return nn.functional.linear(xq, wq, self.layer.bias)


def prepare_qat(model: nn.Module, layers: list[str]) -> nn.Module:
    """Wrap ``layers`` of ``model`` (a copy, modified in place) in :class:`FakeQuant`."""
    for name in layers:
        set_module(model, name, FakeQuant(model.get_submodule(name)))
    return model


def train_qat(model: nn.Module, data: Dataset, *, epochs: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """Fine-tune with cross-entropy (classification) or MSE in the shared loop; the mean loss of each epoch.

    AdamW at a constant rate (weight decay 0.01, torch's default), one seeded batch order across epochs.
    """
    if not isinstance(data, Dataset) or data.X is None or data.y is None:
        raise DataError("QAT trains on labelled array data; pass train=ss.datasets.load(..., split='train')")
    objective = SupervisedObjective(model, data, what="QAT")
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.01, schedule="constant",
                             order="stream", seed=seed, distributed=False, name="QAT")
    seed_everything(seed)
    history = Trainer(objective, len(objective), settings).fit()
    return [h["loss"] for h in history]


def convert_qat(model: nn.Module) -> tuple[nn.Module, list[dict]]:
    """Replace each :class:`FakeQuant` by the int8 module it simulated (static activation ranges)."""
    records = []
    for name, m in list(model.named_modules()):
        if isinstance(m, FakeQuant):
            qp = m.qparams()
            new = (QuantConv2d.from_float(m.layer, qp) if isinstance(m.layer, nn.Conv2d)
                   else QuantLinear.from_float(m.layer, act_qparams=qp))
            set_module(model, name, new)
            records.append({"name": name, "type": type(m.layer).__name__, "status": "quantized",
                            "as": type(new).__name__, "kernel": new.kernel, "act_scale": qp[0], "act_zero_point": qp[1]})
    return model.eval(), records
