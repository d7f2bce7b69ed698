"""slimstack's own integer modules for the PyTorch backend (no torch.ao.quantization).

Every module keeps its integer weights and scales as plain buffers, so ``state_dict`` holds int8 /
packed-uint8 tensors that safetensors stores as they are, and ``spec()`` returns the constructor
arguments that rebuild the empty module on load.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._kernels import (
    dynamic_qparams,
    int8_kernel,
    int8_linear,
    pack_int4,
    quantize_groups,
    quantize_u8,
    quantize_weight,
    unpack_int4_float,
)
from ._transformer import QuantBertLayer

__all__ = ["QuantLinear", "QuantConv2d", "WeightOnlyLinear", "WeightOnlyEmbedding", "MixedEmbedding", "QUANT_MODULES"]


class QuantLinear(nn.Module):
    """int8 Linear: per-channel int8 weights, activations quantized to uint8 per tensor.

    ``static=False`` reads the activation range of every batch (dynamic quantization);
    ``static=True`` uses the calibrated ``act_scale``/``act_zero_point``. ``smooth`` (SmoothQuant)
    divides the input per channel by factors already multiplied into the weight.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, static: bool = False,
                 smooth: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.static = int(in_features), int(out_features), bool(static)
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("act_scale", torch.ones(()) if static else None)
        self.register_buffer("act_zero_point", torch.zeros((), dtype=torch.int32) if static else None)
        self.register_buffer("smooth", torch.ones(in_features) if smooth else None)
        self._packed: Any = None

    @classmethod
    def from_float(cls, linear: nn.Linear, *, per_channel: bool = True, act_qparams: tuple[float, int] | None = None,
                   smooth: torch.Tensor | None = None) -> QuantLinear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, static=act_qparams is not None,
                smooth=smooth is not None)
        w = linear.weight.detach().float()
        if smooth is not None:  # x @ W.T == (x / s) @ (W * s).T
            w = w * smooth[None, :]
            m.smooth.copy_(1.0 / smooth)
        q, s = quantize_weight(w, per_channel)
        m.weight_int8.copy_(q)
        m.weight_scale.copy_(s)
        if linear.bias is not None:
            m.bias.copy_(linear.bias.detach())
        if act_qparams is not None:
            m.act_scale.fill_(act_qparams[0])
            m.act_zero_point.fill_(act_qparams[1])
        return m

    def spec(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "static": self.static, "smooth": self.smooth is not None}

    @property
    def kernel(self) -> str:
        return int8_kernel()

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._packed = None  # new weights: repack on the next call
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2d = x.reshape(-1, self.in_features).float()
        if self.smooth is not None:
            x2d = x2d * self.smooth
        if self.static:
            scale, zp = float(self.act_scale), int(self.act_zero_point)
        else:
            scale, zp = dynamic_qparams(x2d)
        if self._packed is None and self.kernel == "onednn":
            self._packed = torch.ops.onednn.qlinear_prepack(self.weight_int8, None)
        y = int8_linear(x2d.contiguous(), scale, zp, self.weight_int8, self.weight_scale, self.bias, self._packed)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, static={self.static}, kernel={self.kernel}"


class QuantConv2d(nn.Module):
    """int8 Conv2d: per-channel int8 weights and calibrated uint8 input quantization.

    It computes on the dequantized values (torch offers no stable public int8 convolution on CPU
    outside torch.ao), so it saves size and reproduces int8 accuracy; ``kernel`` says "dequantize".
    """

    kernel = "dequantize"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: list[int], stride: list[int],
                 padding: list[int] | str, dilation: list[int], groups: int, bias: bool = True):
        super().__init__()
        self.args = {"in_channels": int(in_channels), "out_channels": int(out_channels),
                     "kernel_size": list(kernel_size), "stride": list(stride),
                     "padding": padding if isinstance(padding, str) else list(padding),
                     "dilation": list(dilation), "groups": int(groups), "bias": bool(bias)}
        shape = (out_channels, in_channels // groups, *kernel_size)
        self.register_buffer("weight_int8", torch.zeros(shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_channels))
        self.register_buffer("bias", torch.zeros(out_channels) if bias else None)
        self.register_buffer("act_scale", torch.ones(()))
        self.register_buffer("act_zero_point", torch.zeros((), dtype=torch.int32))

    @classmethod
    def from_float(cls, conv: nn.Conv2d, act_qparams: tuple[float, int], per_channel: bool = True) -> QuantConv2d:
        m = cls(conv.in_channels, conv.out_channels, list(conv.kernel_size), list(conv.stride),
                conv.padding if isinstance(conv.padding, str) else list(conv.padding), list(conv.dilation),
                conv.groups, conv.bias is not None)
        q, s = quantize_weight(conv.weight, per_channel)
        m.weight_int8.copy_(q)
        m.weight_scale.copy_(s)
        if conv.bias is not None:
            m.bias.copy_(conv.bias.detach())
        m.act_scale.fill_(act_qparams[0])
        m.act_zero_point.fill_(act_qparams[1])
        return m

    def spec(self) -> dict[str, Any]:
        return dict(self.args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, zp = float(self.act_scale), int(self.act_zero_point)
        xd = (quantize_u8(x.float(), scale, zp).float() - zp) * scale
        w = self.weight_int8.float() * self.weight_scale.view(-1, 1, 1, 1)
        a = self.args
        return nn.functional.conv2d(xd, w, self.bias, a["stride"], a["padding"], a["dilation"], a["groups"])


class WeightOnlyLinear(nn.Module):
    """Linear with int8 or packed int4 weights in groups of ``group_size`` inputs (fp16 scales)."""

    kernel = "dequantize"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bits: int = 8, group_size: int = 128):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bits, self.group_size = int(bits), int(group_size)
        cols = in_features // 2 if bits == 4 else in_features
        dtype = torch.uint8 if bits == 4 else torch.int8
        self.register_buffer("weight_q", torch.zeros(out_features, cols, dtype=dtype))
        self.register_buffer("weight_scale", torch.ones(out_features, in_features // group_size, dtype=torch.float16))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear, bits: int, group_size: int) -> WeightOnlyLinear:
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, bits, group_size)
        q, s = quantize_groups(linear.weight, bits, group_size)
        m.weight_q.copy_(pack_int4(q) if bits == 4 else q)
        m.weight_scale.copy_(s)
        if linear.bias is not None:
            m.bias.copy_(linear.bias.detach())
        return m

    def spec(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "bits": self.bits, "group_size": self.group_size}

    def dequantized(self) -> torch.Tensor:
        q = unpack_int4_float(self.weight_q) if self.bits == 4 else self.weight_q.float()
        g = q.reshape(self.out_features, -1, self.group_size) * self.weight_scale.float()[..., None]
        return g.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.dequantized().to(x.dtype), self.bias)


class WeightOnlyEmbedding(nn.Module):
    """Embedding table stored as int8 / packed int4 rows with group scales; looked-up rows are dequantized."""

    kernel = "dequantize"

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int = 8, group_size: int = 128,
                 padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.bits, self.group_size, self.padding_idx = int(bits), int(group_size), padding_idx
        cols = embedding_dim // 2 if bits == 4 else embedding_dim
        self.register_buffer("weight_q", torch.zeros(num_embeddings, cols,
                                                     dtype=torch.uint8 if bits == 4 else torch.int8))
        self.register_buffer("weight_scale", torch.ones(num_embeddings, embedding_dim // group_size,
                                                        dtype=torch.float16))

    @classmethod
    def from_float(cls, emb: nn.Embedding, bits: int, group_size: int) -> WeightOnlyEmbedding:
        m = cls(emb.num_embeddings, emb.embedding_dim, bits, group_size, emb.padding_idx)
        q, s = quantize_groups(emb.weight, bits, group_size)
        m.weight_q.copy_(pack_int4(q) if bits == 4 else q)
        m.weight_scale.copy_(s)
        return m

    def spec(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim, "bits": self.bits,
                "group_size": self.group_size, "padding_idx": self.padding_idx}

    @property
    def weight(self) -> torch.Tensor:  # Hugging Face code reads .weight (dtype, tying); give the float view
        return self.forward(torch.arange(self.num_embeddings))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight_q[ids]
        q = unpack_int4_float(rows) if self.bits == 4 else rows.float()
        s = self.weight_scale[ids].float()
        g = q.reshape(*ids.shape, -1, self.group_size) * s[..., None]
        return g.reshape(*ids.shape, self.embedding_dim)


class MixedEmbedding(nn.Module):
    """Embedding table with int8 rows for the ids the calibration data looked up and packed int4 for the rest.

    Most of a vocabulary never occurs in a given domain; storing those rows in 4 bits (groups of
    ``group_size``, fp16 scales) and the rows the domain uses in 8 bits (one fp16 scale per row)
    shrinks the table by about 40 % on MiniLM while the tokens that matter keep int8 precision.
    ``slot`` maps an id to its row: ``k >= 0`` is int8 row ``k``, ``k < 0`` is int4 row ``-k - 1``.
    """

    kernel = "dequantize"

    def __init__(self, num_embeddings: int, embedding_dim: int, n_hot: int, group_size: int = 32,
                 padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.n_hot, self.group_size, self.padding_idx = int(n_hot), int(group_size), padding_idx
        n_cold = self.num_embeddings - self.n_hot
        self.register_buffer("slot", torch.zeros(num_embeddings, dtype=torch.int32))
        self.register_buffer("hot_q", torch.zeros(n_hot, embedding_dim, dtype=torch.int8))
        self.register_buffer("hot_scale", torch.ones(n_hot, 1, dtype=torch.float16))
        self.register_buffer("cold_q", torch.zeros(n_cold, embedding_dim // 2, dtype=torch.uint8))
        self.register_buffer("cold_scale", torch.ones(n_cold, embedding_dim // group_size, dtype=torch.float16))

    @classmethod
    def from_float(cls, emb: nn.Embedding, hot_ids: torch.Tensor, group_size: int = 32) -> MixedEmbedding:
        w = emb.weight.detach().float()
        hot = torch.zeros(emb.num_embeddings, dtype=torch.bool)
        hot[hot_ids.long()] = True
        hot_rows, cold_rows = torch.nonzero(hot).flatten(), torch.nonzero(~hot).flatten()
        m = cls(emb.num_embeddings, emb.embedding_dim, len(hot_rows), group_size, emb.padding_idx)
        m.slot[hot_rows] = torch.arange(len(hot_rows), dtype=torch.int32)
        m.slot[cold_rows] = -1 - torch.arange(len(cold_rows), dtype=torch.int32)
        if len(hot_rows):
            q, sc = quantize_groups(w[hot_rows], 8, emb.embedding_dim)
            m.hot_q.copy_(q)
            m.hot_scale.copy_(sc)
        if len(cold_rows):
            q, sc = quantize_groups(w[cold_rows], 4, group_size)
            m.cold_q.copy_(pack_int4(q))
            m.cold_scale.copy_(sc)
        return m

    def weight_tensors(self) -> list[torch.Tensor]:
        """One entry per weight (two int4 values per packed byte), for parameter counts."""
        return [self.hot_q, torch.cat([self.cold_q, self.cold_q], dim=-1)]

    def spec(self) -> dict[str, Any]:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim, "n_hot": self.n_hot,
                "group_size": self.group_size, "padding_idx": self.padding_idx}

    @property
    def weight(self) -> torch.Tensor:  # Hugging Face code reads .weight (dtype, tying); give the float view
        return self.forward(torch.arange(self.num_embeddings))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        slot = self.slot[ids]
        out = torch.empty(*ids.shape, self.embedding_dim)
        hot = slot >= 0
        k = slot[hot].long()
        out[hot] = self.hot_q[k].float() * self.hot_scale[k].float()
        k = (-1 - slot[~hot]).long()
        if len(k):
            g = unpack_int4_float(self.cold_q[k]).reshape(len(k), -1, self.group_size)
            out[~hot] = (g * self.cold_scale[k].float()[..., None]).reshape(len(k), self.embedding_dim)
        return out


QUANT_MODULES: dict[str, type[nn.Module]] = {
    c.__name__: c for c in (QuantLinear, QuantConv2d, WeightOnlyLinear, WeightOnlyEmbedding, MixedEmbedding,
                            QuantBertLayer)
}
