"""Function-preserving channel equalization before rounding (AWQ / SmoothQuant style).

A weight's input channel ``j`` can be multiplied by ``s_j`` if whatever produces that channel divides
it by ``s_j``: the model computes the same function, but the rounding sees different weights and
llama.cpp's 8-bit activation blocks see smaller outliers. Four places allow it in a Llama block:

- ``input_layernorm`` -> q, k, v: the RMSNorm weight is divided by ``s``, the q/k/v columns multiplied;
- ``post_attention_layernorm`` -> gate, up: the same;
- v -> o: v's output rows divided by ``s``, o's input columns multiplied; under grouped-query attention a
  value head is read by several query heads, so one ``s`` per key/value group is shared by their columns;
- up -> down: up's rows divided by ``s`` (``silu(gate) * up`` is linear in up), down's columns multiplied.

``s_j = rms_j ** alpha`` (rms of the channel's calibration activations, from the diagonal of the input
Hessian ``X^T X``; normalised to geometric mean 1). ``alpha`` is chosen per place from a few candidates
by the consumers' output error ``tr(dW' H' dW'^T)`` after rounding to the base format (the scale
search of :mod:`._search` included), ``H' = S^-1 H S^-1`` being the Hessian of the scaled inputs, so no
extra forward pass is needed. Row-scaling the producers (v, up) is neutral for llama.cpp's per-row
blocks. The tied embedding / final norm is left alone: scaling the head's columns would scale the input
embedding too.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from ._grids import FORMATS

__all__ = ["equalize", "ALPHAS", "applies"]

ALPHAS = (0.0, 0.25, 0.5, 0.75)  # candidates of the search ("auto"); 0 leaves a place as it was
LIMIT = 100.0  # scales stay within [1/LIMIT, LIMIT] of their geometric mean (dead channels do not explode)


def applies(model: nn.Module) -> str | None:
    """None when ``model`` has the Llama block layout equalization needs, else why not."""
    try:
        layers = model.get_submodule("model.layers")
    except AttributeError:
        return f"{type(model).__name__} has no model.layers (a Llama-family decoder)"
    need = ("input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
            "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    for i, layer in enumerate(layers):
        for n in need:
            try:
                layer.get_submodule(n)
            except AttributeError:
                return f"model.layers.{i} has no {n} (a Llama-family block is needed)"
        for n in ("input_layernorm", "post_attention_layernorm"):
            if getattr(layer.get_submodule(n), "bias", None) is not None:
                return f"model.layers.{i}.{n} has a bias"
    return None


def _scales(h: torch.Tensor, n: int, alpha: float) -> torch.Tensor:
    rms = (torch.diag(h).double() / max(n, 1)).sqrt()
    rms = rms.clamp_min(float(rms.max()) * 1e-6 + 1e-30)
    s = rms ** alpha
    return (s / torch.exp(torch.log(s).mean())).clamp(1 / LIMIT, LIMIT).float()


def _error(ws: list[torch.Tensor], h: torch.Tensor, s: torch.Tensor, n: int, fmt: str) -> float:
    """Output error of the consumer weights ``ws`` (columns times ``s``) rounded to ``fmt``, inputs divided by ``s``."""
    grid = FORMATS[fmt]
    hs = h / s[:, None] / s[None, :]
    imp = torch.diag(hs).float().numpy().copy()
    total = 0.0
    for w in ws:
        w2 = w.detach().float() * s[None, :]
        if hasattr(grid, "sub_fit"):  # K-quant grids round whole super-blocks
            q, d, m, _ = grid.round(w2, imp)
        else:
            q, d, m = grid.round(w2, 32, imp=imp, search=True)
        dw = w2 - grid.dequantize(q, d, m)
        total += float(((dw @ hs) * dw).sum() / max(n, 1))
    return total


def _pick(ws: list[torch.Tensor], h: torch.Tensor, n: int, fmt: str, alphas: tuple[float, ...]) -> tuple[float, dict]:
    errs = {a: _error(ws, h, _scales(h, n, a), n, fmt) for a in alphas}
    best = min(errs, key=errs.get)
    return best, errs


@torch.no_grad()
def equalize(model: nn.Module, hess: dict[str, torch.Tensor], n: int, fmt: str, formats: dict[str, str],
             alpha: float | str = "auto") -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, Any]]:
    """A scaled copy of ``model``, the Hessians of its (scaled) Linear inputs, and a record per place.

    ``hess`` maps Linear names to ``X^T X`` (siblings share one tensor object), ``n`` tokens; ``fmt`` is the
    base format the error is measured at, ``formats`` a per-tensor override (e.g. K-quants for down);
    ``alpha`` a float for every place or "auto" (chosen per place from :data:`ALPHAS`).
    """
    out = copy.deepcopy(model)
    cfg = out.config
    n_head, n_kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    rep = n_head // n_kv
    alphas = ALPHAS if alpha == "auto" else (float(alpha),)
    new: dict[str, torch.Tensor] = dict(hess)
    record: dict[str, Any] = {}

    def fmt_of(name: str) -> str:
        return formats.get(name + ".weight", fmt)

    for i, layer in enumerate(out.model.layers):
        p = f"model.layers.{i}."
        attn, mlp = layer.self_attn, layer.mlp
        # norm -> consumers reading the same input
        for key, norm, names in (
                ("norm->q,k,v", layer.input_layernorm, ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                ("norm->gate,up", layer.post_attention_layernorm, ("mlp.gate_proj", "mlp.up_proj"))):
            lins = [layer.get_submodule(x) for x in names]
            h = hess[p + names[0]]
            a, errs = _pick([m.weight for m in lins], h, n, fmt_of(p + names[0]), alphas)
            s = _scales(h, n, a)
            norm.weight.div_(s.to(norm.weight.dtype))
            for m in lins:
                m.weight.mul_(s[None, :].to(m.weight.dtype))
            hs = h / s[:, None] / s[None, :]
            for x in names:
                new[p + x] = hs
            record[p + key] = _rec(a, errs)
        # v -> o, one scale vector per key/value group shared by the query heads reading it
        h = hess[p + "self_attn.o_proj"]
        a, errs = _pick([attn.o_proj.weight], h, n, fmt_of(p + "self_attn.o_proj"), alphas)
        s = _scales(h, n, a).reshape(n_head, hd)
        s = torch.stack([s[g * rep:(g + 1) * rep].pow(2).mean(0).sqrt() for g in range(n_kv)])  # (n_kv, hd)
        s_cols = s.repeat_interleave(rep, 0).reshape(-1)
        attn.v_proj.weight.div_(s.reshape(-1)[:, None].to(attn.v_proj.weight.dtype))
        attn.o_proj.weight.mul_(s_cols[None, :].to(attn.o_proj.weight.dtype))
        new[p + "self_attn.o_proj"] = h / s_cols[:, None] / s_cols[None, :]
        record[p + "v->o"] = _rec(a, errs)
        # up -> down
        h = hess[p + "mlp.down_proj"]
        a, errs = _pick([mlp.down_proj.weight], h, n, fmt_of(p + "mlp.down_proj"), alphas)
        s = _scales(h, n, a)
        mlp.up_proj.weight.div_(s[:, None].to(mlp.up_proj.weight.dtype))
        mlp.down_proj.weight.mul_(s[None, :].to(mlp.down_proj.weight.dtype))
        new[p + "mlp.down_proj"] = h / s[:, None] / s[None, :]
        record[p + "up->down"] = _rec(a, errs)
    return out.eval(), new, record


def _rec(alpha: float, errs: dict[float, float]) -> dict[str, Any]:
    base = errs.get(0.0)
    out: dict[str, Any] = {"alpha": alpha}
    if base:
        out["error_vs_unscaled"] = float(np.round(errs[alpha] / base, 4))
    return out
