"""Integer math shared by the torch modules: weight quantization, int4 packing, and the int8 GEMM.

The int8 GEMM uses oneDNN's ``qlinear_pointwise`` (u8 activations x s8 per-channel weights, VNNI/AMX
where the CPU has them) when this torch build offers it, and otherwise dequantizes and runs a float
matmul, which is exact to the same rounding but not faster. :func:`int8_kernel` says which one runs.
"""

from __future__ import annotations

import functools
import warnings

import torch

__all__ = ["quantize_weight", "quantize_groups", "pack_int4", "unpack_int4", "int8_kernel", "int8_gemm_saturates", "weight_qmax", "int8_linear", "unpack_int4_float",
           "dynamic_qparams", "quantize_u8", "register_int8_gemm_macs"]


def quantize_weight(w: torch.Tensor, per_channel: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization of a weight (out, ...): returns (int8 weight, float scales (out,)).

    The range is +-:func:`weight_qmax`: 127, or 63 where this CPU's u8 x s8 GEMM would overflow.
    """
    qmax = weight_qmax()
    flat = w.detach().reshape(w.shape[0], -1).float()
    amax = flat.abs().amax(dim=1) if per_channel else flat.abs().amax().expand(w.shape[0])
    scale = (amax / float(qmax)).clamp(min=1e-12)
    q = torch.round(flat / scale[:, None]).clamp(-qmax, qmax).to(torch.int8)
    return q.reshape(w.shape), scale.contiguous()


def quantize_groups(w: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric group-wise quantization of a 2-D weight: (int8 values in [-2^(b-1)+1, 2^(b-1)-1], fp16 scales)."""
    out_f, in_f = w.shape
    qmax = 2 ** (bits - 1) - 1
    g = w.detach().float().reshape(out_f, in_f // group_size, group_size)
    scale = (g.abs().amax(dim=2) / qmax).clamp(min=1e-8).to(torch.float16)
    q = torch.round(g / scale.float()[..., None]).clamp(-qmax, qmax).to(torch.int8)
    return q.reshape(out_f, in_f), scale


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Two signed 4-bit values per byte (low nibble first); the last dim must be even."""
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).contiguous()


# Byte -> (low nibble, high nibble) as signed floats: one gather dequantizes two weights.
_INT4_LUT = torch.stack(((torch.arange(256) & 0x0F) - 8, (torch.arange(256) >> 4) - 8), dim=1).float()


def unpack_int4_float(p: torch.Tensor) -> torch.Tensor:
    """Float values of packed int4 bytes (same order as :func:`unpack_int4`), via a 256-entry table."""
    return _INT4_LUT[p.long()].reshape(*p.shape[:-1], p.shape[-1] * 2)


def unpack_int4(p: torch.Tensor) -> torch.Tensor:
    lo = (p & 0x0F).to(torch.int8) - 8
    hi = (p >> 4).to(torch.int8) - 8
    return torch.stack((lo, hi), dim=-1).reshape(*p.shape[:-1], p.shape[-1] * 2)


@functools.lru_cache(maxsize=1)
def int8_kernel() -> str:
    """"onednn" when torch's oneDNN int8 linear runs on this CPU, else "dequantize"."""
    try:
        w = torch.ones(8, 8, dtype=torch.int8)
        packed = torch.ops.onednn.qlinear_prepack(w, [4, 8])
        x = torch.full((4, 8), 130, dtype=torch.uint8)
        y = torch.ops.onednn.qlinear_pointwise(x, 0.5, 128, packed, torch.ones(8), torch.zeros(8, dtype=torch.int64),
                                               None, 1.0, 0, torch.float32, "none", [], "")
        return "onednn" if torch.allclose(y, torch.full((4, 8), 8.0)) else "dequantize"
    except (AttributeError, RuntimeError):
        return "dequantize"


@functools.lru_cache(maxsize=1)
def int8_gemm_saturates() -> bool:
    """True when oneDNN's u8 x s8 GEMM saturates on this CPU (no VNNI: AVX2's vpmaddubsw adds
    pairs of u8*s8 products in int16, so 255*127*2 overflows and results are silently wrong)."""
    if int8_kernel() != "onednn":
        return False
    w = torch.full((8, 16), 127, dtype=torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(w, [4, 16])
    x = torch.full((4, 16), 255, dtype=torch.uint8)
    y = torch.ops.onednn.qlinear_pointwise(x, 1.0, 0, packed, torch.ones(8), torch.zeros(8, dtype=torch.int64),
                                           None, 1.0, 0, torch.float32, "none", [], "")
    return not torch.allclose(y, torch.full((4, 8), 255.0 * 127 * 16))


def weight_qmax() -> int:
    """Largest int8 weight code: 127, or 63 (7-bit weights, as fbgemm's reduce_range) where the GEMM saturates."""
    return 63 if int8_gemm_saturates() else 127


def dynamic_qparams(x: torch.Tensor) -> tuple[float, int]:
    """Asymmetric uint8 scale and zero point covering ``x``'s range (and 0)."""
    mn, mx = torch.aminmax(x)
    mn, mx = min(float(mn), 0.0), max(float(mx), 0.0)
    scale = max((mx - mn) / 255.0, 1e-8)
    return scale, int(min(255, max(0, round(-mn / scale))))


def quantize_u8(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """uint8 codes of ``x``; torch's fused per-tensor quantizer is about 2x faster than the eager formula."""
    if _FUSED_QUANTIZE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized-tensor creation is deprecated; the eager path remains
            try:
                return torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr()
            except (AttributeError, RuntimeError):
                pass
    return torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, 0, 255).to(torch.uint8)


_FUSED_QUANTIZE = hasattr(torch, "quantize_per_tensor")


def int8_linear(x2d: torch.Tensor, scale: float, zero_point: int, weight: torch.Tensor, w_scale: torch.Tensor,
                bias: torch.Tensor | None, packed: object | None) -> torch.Tensor:
    """``dequant(quant(x)) @ dequant(W).T + b`` computed in integers where a kernel exists."""
    xq = quantize_u8(x2d, scale, zero_point)
    if packed is not None:
        zeros = torch.zeros(w_scale.shape[0], dtype=torch.int64)
        y = torch.ops.onednn.qlinear_pointwise(xq, scale, zero_point, packed, w_scale, zeros, None, 1.0, 0,
                                               torch.float32, "none", [], "")
        return y + bias if bias is not None else y
    xd = (xq.float() - zero_point) * scale
    return torch.nn.functional.linear(xd, weight.float() * w_scale[:, None], bias)


@functools.lru_cache(maxsize=1)
def register_int8_gemm_macs() -> None:
    """Teach torch's FLOP counter (behind ``ss.measure``'s MACs) the oneDNN int8 GEMM: 2 x M x K x N.

    Called by the measure adapters of int8 models before they count, not at import.
    """
    try:
        from torch.utils.flop_counter import register_flop_formula

        op = torch.ops.onednn.qlinear_pointwise  # the packet: every overload (plain, binary add) at once
    except (AttributeError, RuntimeError, ImportError):
        return

    def gemm_flops(qx_shape, *args, out_shape=None, **kwargs) -> int:
        rows = 1
        for d in qx_shape[:-1]:
            rows *= int(d)
        return 2 * rows * int(qx_shape[-1]) * int(out_shape[-1])

    try:
        register_flop_formula(op)(gemm_flops)
    except RuntimeError:  # already registered (module reloaded)
        pass

