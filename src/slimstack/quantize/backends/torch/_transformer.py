"""One fused int8 module for a BERT-style encoder layer (post-LayerNorm, GELU MLP, absolute positions).

Quantizing each Linear of a transformer on its own leaves most of the time outside the int8 GEMMs:
with AMX/VNNI the four GEMMs of a MiniLM layer take ~2 ms per 2,000 tokens, while the float glue
around them (bias adds, three separate quantizations of the same Q/K/V input, GELU, residual adds and
a softmax over 15-token rows that torch runs one short row at a time) takes several times that.
:class:`QuantBertLayer` removes the glue:

- Q, K and V are one GEMM over one quantized input (1/sqrt(head_dim) folded into Q's weights);
- bias, GELU and the residual add run inside oneDNN's int8 GEMM as post-ops;
- with static ranges the GELU output leaves the first MLP GEMM already as uint8 for the second;
- attention is two batched matmuls around an element-wise softmax (max, exp, sum over the whole
  tensor at once), which is exact and several times faster than ``torch.softmax`` on short rows.

It computes the same function as the float layer up to int8 rounding (tested against it), and is
used only when torch's oneDNN int8 kernel runs on this CPU (:func:`int8_kernel`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn

from ...._arch import FAMILIES
from ._kernels import dynamic_qparams, int8_kernel, quantize_u8, quantize_weight

__all__ = ["QuantBertLayer", "fusable_layers", "fused_available", "BERT_LINEARS"]

# Relative names of the four GEMMs' Linear modules inside a Hugging Face BertLayer-style module, from the
# one table of transformer layouts (BERT, RoBERTa, XLM-R, ELECTRA and CamemBERT share it). DistilBERT and
# ViT layers are not fused (ViT normalises before each block); their Linears get per-layer int8.
_FAMILY = FAMILIES["bert"]
BERT_LINEARS = {role: getattr(_FAMILY, role) for role in ("q", "k", "v", "o", "fc1", "fc2")}
_GEMMS = ("qkv", "o", "fc1", "fc2")
_INPUT_OF = {"qkv": "q", "o": "o", "fc1": "fc1", "fc2": "fc2"}  # whose observed input each GEMM quantizes


def _get(m: nn.Module, path: str) -> Any:
    for part in path.split("."):
        m = getattr(m, part, None)
        if m is None:
            return None
    return m


def _is_bert_layer(m: nn.Module) -> bool:
    if not all(isinstance(_get(m, p), nn.Linear) for p in BERT_LINEARS.values()):
        return False
    if not all(isinstance(_get(m, p), nn.LayerNorm) for p in (_FAMILY.ln1, _FAMILY.ln2)):
        return False
    att = m.attention.self
    act = _get(m, _FAMILY.act)
    exact_gelu = type(act).__name__ == "GELUActivation" or (isinstance(act, nn.GELU) and act.approximate == "none")
    absolute = getattr(att, "position_embedding_type", "absolute") in (None, "absolute")
    decoder = bool(getattr(att, "is_decoder", False)) or bool(getattr(m, "add_cross_attention", False))
    return (exact_gelu and absolute and not decoder and hasattr(att, "num_attention_heads")
            and hasattr(att, "attention_head_size"))


def fusable_layers(model: nn.Module, layers: list[str]) -> list[str]:
    """Names of BERT-style layers in ``model`` whose six Linear modules are all in ``layers``."""
    chosen = set(layers)
    return [name for name, m in model.named_modules() if name and _is_bert_layer(m)
            and all(f"{name}.{p}" in chosen for p in BERT_LINEARS.values())]


class QuantBertLayer(nn.Module):
    """A whole BERT encoder layer with int8 GEMMs (u8 activations x s8 per-channel weights, oneDNN).

    ``static=True`` uses calibrated input ranges for the four GEMMs; ``static=False`` reads each
    input's range per batch. ``smooth`` adds SmoothQuant per-channel input divisors.
    """

    kernel = "onednn-fused"

    def __init__(self, hidden: int, intermediate: int, heads: int, eps: float = 1e-12, static: bool = False,
                 smooth: bool = False):
        super().__init__()
        self.hidden, self.intermediate, self.heads = int(hidden), int(intermediate), int(heads)
        self.eps, self.static, self.smoothed = float(eps), bool(static), bool(smooth)
        shapes = {"qkv": (3 * hidden, hidden), "o": (hidden, hidden), "fc1": (intermediate, hidden),
                  "fc2": (hidden, intermediate)}
        for g, (out_f, in_f) in shapes.items():
            self.register_buffer(f"{g}_weight", torch.zeros(out_f, in_f, dtype=torch.int8))
            self.register_buffer(f"{g}_scale", torch.ones(out_f))
            self.register_buffer(f"{g}_bias", torch.zeros(out_f))
            self.register_buffer(f"{g}_act_scale", torch.ones(()) if static else None)
            self.register_buffer(f"{g}_act_zero_point", torch.zeros((), dtype=torch.int32) if static else None)
            self.register_buffer(f"{g}_smooth", torch.ones(in_f) if smooth else None)
        for ln in ("ln1", "ln2"):
            self.register_buffer(f"{ln}_weight", torch.ones(hidden))
            self.register_buffer(f"{ln}_bias", torch.zeros(hidden))
        self._packed: dict[str, Any] = {}

    @classmethod
    def from_float(cls, layer: nn.Module, act_qparams: dict[str, tuple[float, int]] | None = None,
                   smooth: dict[str, torch.Tensor] | None = None, per_channel: bool = True) -> QuantBertLayer:
        """Build from a float BERT layer; ``act_qparams``/``smooth`` are keyed by q, o, fc1, fc2 (see BERT_LINEARS)."""
        lin = {k: _get(layer, p) for k, p in BERT_LINEARS.items()}
        att = layer.attention.self
        heads, head_dim = int(att.num_attention_heads), int(att.attention_head_size)
        ln1, ln2 = _get(layer, _FAMILY.ln1), _get(layer, _FAMILY.ln2)
        smooth = smooth or {}
        m = cls(lin["q"].in_features, lin["fc1"].out_features, heads, ln1.eps, static=act_qparams is not None,
                smooth=bool(smooth))
        if m.hidden != heads * head_dim:
            raise ValueError(f"hidden size {m.hidden} != heads {heads} x head size {head_dim}")
        scaling = 1.0 / math.sqrt(head_dim)  # folded into Q: softmax(QK^T / sqrt(d)) needs no extra pass

        def wb(linear: nn.Linear, factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
            b = linear.bias.detach().float() if linear.bias is not None else torch.zeros(linear.out_features)
            return linear.weight.detach().float() * factor, b * factor

        (wq, bq), (wk, bk), (wv, bv) = wb(lin["q"], scaling), wb(lin["k"]), wb(lin["v"])
        weights = {"qkv": (torch.cat([wq, wk, wv]), torch.cat([bq, bk, bv])), "o": wb(lin["o"]),
                   "fc1": wb(lin["fc1"]), "fc2": wb(lin["fc2"])}
        for g, (w, b) in weights.items():
            s = smooth.get(_INPUT_OF[g])
            if s is not None:  # x @ W.T == (x / s) @ (W * s).T; unsmoothed GEMMs keep divisors of 1
                w = w * s[None, :]
                getattr(m, f"{g}_smooth").copy_(1.0 / s)
            q, sc = quantize_weight(w, per_channel)
            getattr(m, f"{g}_weight").copy_(q)
            getattr(m, f"{g}_scale").copy_(sc)
            getattr(m, f"{g}_bias").copy_(b)
            if act_qparams is not None:
                scale, zp = act_qparams[_INPUT_OF[g]]
                getattr(m, f"{g}_act_scale").fill_(scale)
                getattr(m, f"{g}_act_zero_point").fill_(zp)
        for name, ln in (("ln1", ln1), ("ln2", ln2)):
            getattr(m, f"{name}_weight").copy_(ln.weight.detach())
            getattr(m, f"{name}_bias").copy_(ln.bias.detach())
        return m

    def weight_tensors(self) -> list[torch.Tensor]:
        """The tensors counted as parameters: int8 weights, biases and LayerNorm affine terms."""
        return ([getattr(self, f"{g}_{t}") for g in _GEMMS for t in ("weight", "bias")]
                + [getattr(self, f"{n}_{t}") for n in ("ln1", "ln2") for t in ("weight", "bias")])

    def spec(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "intermediate": self.intermediate, "heads": self.heads, "eps": self.eps,
                "static": self.static, "smooth": self.smoothed}

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._packed = {}  # new weights: repack on the next call
        super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden}, intermediate={self.intermediate}, heads={self.heads}, "
                f"static={self.static}, kernel={self.kernel}")

    # -- pieces -------------------------------------------------------------------------------
    def _w(self, g: str) -> tuple[Any, torch.Tensor]:
        """The GEMM's packed weight and its (zero) weight zero points, built on first use."""
        if g not in self._packed:
            w = getattr(self, f"{g}_weight")
            self._packed[g] = (torch.ops.onednn.qlinear_prepack(w, None), torch.zeros(w.shape[0], dtype=torch.int64))
        return self._packed[g]

    def _input(self, g: str, x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
        s = getattr(self, f"{g}_smooth")
        if s is not None:
            x = x * s
        if self.static:
            scale, zp = float(getattr(self, f"{g}_act_scale")), int(getattr(self, f"{g}_act_zero_point"))
        else:
            scale, zp = dynamic_qparams(x)
        return quantize_u8(x.contiguous(), scale, zp), scale, zp

    def _gemm(self, g: str, xq: torch.Tensor, scale: float, zp: int, *, residual: torch.Tensor | None = None,
              gelu: bool = False, out_qparams: tuple[float, int] | None = None) -> torch.Tensor:
        (w, zeros), ws, b = self._w(g), getattr(self, f"{g}_scale"), getattr(self, f"{g}_bias")
        if residual is not None:  # "add" (not "sum") writes a new tensor: the caller's input stays intact
            return torch.ops.onednn.qlinear_pointwise.binary(xq, scale, zp, w, ws, zeros, residual, b, 1.0, 0,
                                                             torch.float32, 1.0, 0, "add", 1.0, "none", [], "")
        out_scale, out_zp, out_dtype = (*out_qparams, torch.uint8) if out_qparams else (1.0, 0, torch.float32)
        return torch.ops.onednn.qlinear_pointwise(xq, scale, zp, w, ws, zeros, b, out_scale, out_zp, out_dtype,
                                                  "gelu" if gelu else "none", [], "none" if gelu else "")

    @staticmethod
    def _softmax_(s: torch.Tensor) -> torch.Tensor:
        s.sub_(s.amax(-1, keepdim=True)).exp_()
        return s.div_(s.sum(-1, keepdim=True))

    def _attention(self, qkv: torch.Tensor, batch: int, length: int, mask: torch.Tensor | None) -> torch.Tensor:
        h, d = self.heads, self.hidden // self.heads
        q, k, v = qkv.view(batch, length, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, d) each
        scores = torch.matmul(q, k.transpose(-1, -2))  # 1/sqrt(d) is folded into Q
        if mask is not None:
            scores = scores.masked_fill_(~mask, float("-inf")) if mask.dtype == torch.bool else scores.add_(mask)
        probs = self._softmax_(scores)
        return torch.matmul(probs, v).transpose(1, 2).reshape(batch * length, self.hidden)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any,
                **kwargs: Any) -> Any:
        batch, length, _ = hidden_states.shape
        x = hidden_states.reshape(batch * length, self.hidden).float()
        qkv = self._gemm("qkv", *self._input("qkv", x))
        ctx = self._attention(qkv, batch, length, _mask(attention_mask))
        x1 = torch.nn.functional.layer_norm(self._gemm("o", *self._input("o", ctx), residual=x), (self.hidden,),
                                            self.ln1_weight, self.ln1_bias, self.eps)
        if self.static and self.fc2_smooth is None:  # GELU output leaves the GEMM as uint8 for fc2
            out_q = (float(self.fc2_act_scale), int(self.fc2_act_zero_point))
            inter = self._gemm("fc1", *self._input("fc1", x1), gelu=True, out_qparams=out_q)
            y = self._gemm("fc2", inter, *out_q, residual=x1)
        else:
            inter = self._gemm("fc1", *self._input("fc1", x1), gelu=True)
            y = self._gemm("fc2", *self._input("fc2", inter), residual=x1)
        out = torch.nn.functional.layer_norm(y, (self.hidden,), self.ln2_weight, self.ln2_bias, self.eps)
        out = out.reshape(batch, length, self.hidden)
        return out if _layer_returns_tensor() else (out,)


def _mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The attention mask as Hugging Face hands it to a layer: None, boolean (True = attend) or additive."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return None if bool(mask.all()) else mask
    return mask.float()


@functools.lru_cache(maxsize=1)
def _layer_returns_tensor() -> bool:
    """transformers 5 encoders take a layer's output as a tensor; 4.x indexes a tuple.

    Read from the installed package's metadata, so importing slimstack does not import transformers.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("transformers").split(".")[0]) >= 5
    except (PackageNotFoundError, ValueError):
        return True


@functools.lru_cache(maxsize=1)
def fused_available() -> bool:
    """True when this torch's oneDNN int8 GEMM runs here with the post-ops the fused layer uses."""
    if int8_kernel() != "onednn":
        return False
    try:
        w = torch.ops.onednn.qlinear_prepack(torch.ones(8, 8, dtype=torch.int8), None)
        x = torch.full((4, 8), 130, dtype=torch.uint8)
        ones, zeros = torch.ones(8), torch.zeros(8, dtype=torch.int64)
        u8 = torch.ops.onednn.qlinear_pointwise(x, 0.5, 128, w, ones, zeros, None, 1.0, 0, torch.uint8, "gelu", [],
                                                "none")
        added = torch.ops.onednn.qlinear_pointwise.binary(x, 0.5, 128, w, ones, zeros, torch.ones(4, 8), None, 1.0,
                                                          0, torch.float32, 1.0, 0, "add", 1.0, "none", [], "")
        return u8.dtype == torch.uint8 and bool(torch.allclose(added, torch.full((4, 8), 9.0)))
    except (AttributeError, RuntimeError, TypeError):
        return False
