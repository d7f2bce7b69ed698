"""Function-preserving channel smoothing before rounding (SmoothQuant), for llama.cpp's 8-bit activations.

llama.cpp quantizes every matmul's activations to 8 bits in blocks of 32 (``Q8_0``/``Q8_1``/``Q8_K``),
so a channel with a massive activation coarsens the step of the 31 channels sharing its block. A
weight's input channel ``j`` can be multiplied by ``s_j`` if whatever produces that channel divides it
by ``s_j``; the model computes the same function, but the activation blocks see smaller outliers. Four
places allow it in a Llama block:

- ``input_layernorm`` -> q, k, v: the RMSNorm weight is divided by ``s``, the q/k/v columns multiplied;
- ``post_attention_layernorm`` -> gate, up: the same;
- v -> o: v's output rows divided by ``s``, o's input columns multiplied; under grouped-query attention a
  value head is read by several query heads, so one ``s`` per key/value group is shared by their columns;
- up -> down: up's rows divided by ``s`` (``silu(gate) * up`` is linear in up), down's columns multiplied.

``s_j = rms_j ** alpha / wmax_j ** (1 - alpha)`` (SmoothQuant's migration strength ``alpha``; ``rms`` of
the channel's calibration activations from the diagonal of the input Hessian ``X^T X``, ``wmax`` the
largest weight magnitude on that input), normalised to geometric mean 1 and kept within
``[1/LIMIT, LIMIT]``. The Hessians of the scaled inputs follow exactly (``H' = S^-1 H S^-1``): no extra
forward pass. The tied embedding / final norm is left alone (scaling the head's columns would scale
the input embedding too).

Measured on SmolLM2 (docs/llm-quantize.md): with 8-bit weights, alpha=0.5 halves the median per-token
KLD in llama.cpp; with GPTQ at 4 bits it *raises* the KLD (the weights' rounding gets harder), so
it is off unless asked for.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["smooth", "applies", "LIMIT"]

LIMIT = 100.0


def applies(model: nn.Module) -> str | None:
    """None when ``model`` has the Llama block layout smoothing needs, else why not."""
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
                return f"model.layers.{i}.{n} has a bias, which the scaling would have to follow"
    return None


def _scales(h: torch.Tensor, n: int, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    rms = (torch.diag(h).double() / max(n, 1)).sqrt()
    rms = rms.clamp_min(float(rms.max()) * 1e-6 + 1e-30)
    wmax = torch.stack([w.detach().abs().amax(0) for w in weights]).amax(0).double()
    wmax = wmax.clamp_min(float(wmax.max()) * 1e-6 + 1e-30)
    s = rms ** alpha / wmax ** (1 - alpha)
    return (s / torch.exp(torch.log(s).mean())).clamp(1 / LIMIT, LIMIT).float()


@torch.no_grad()
def smooth(model: nn.Module, hess: dict[str, torch.Tensor], n: int,
           alpha: float) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A smoothed copy of ``model`` and the Hessians of its scaled Linear inputs (``hess``: Linear name ->
    ``X^T X`` over ``n`` tokens, siblings sharing one tensor; other entries, e.g. the head's, kept)."""
    out = copy.deepcopy(model)
    cfg = out.config
    n_head, n_kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    rep = n_head // n_kv
    new = dict(hess)

    def scaled(h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return h / s[:, None] / s[None, :]

    for i, layer in enumerate(out.model.layers):
        p = f"model.layers.{i}."
        attn, mlp = layer.self_attn, layer.mlp
        for norm, names in ((layer.input_layernorm, ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                            (layer.post_attention_layernorm, ("mlp.gate_proj", "mlp.up_proj"))):
            lins = [layer.get_submodule(x) for x in names]
            h = hess[p + names[0]]
            s = _scales(h, n, [m.weight for m in lins], alpha)
            norm.weight.div_(s.to(norm.weight.dtype))
            for m in lins:
                m.weight.mul_(s[None, :].to(m.weight.dtype))
            hs = scaled(h, s)
            for x in names:
                new[p + x] = hs
        # v -> o: one scale vector per key/value group, shared by the query heads that read it
        h = hess[p + "self_attn.o_proj"]
        s = _scales(h, n, [attn.o_proj.weight], alpha).reshape(n_head, hd)
        s = torch.stack([s[g * rep:(g + 1) * rep].pow(2).mean(0).sqrt() for g in range(n_kv)])
        cols = s.repeat_interleave(rep, 0).reshape(-1)
        attn.v_proj.weight.div_(s.reshape(-1)[:, None].to(attn.v_proj.weight.dtype))
        attn.o_proj.weight.mul_(cols[None, :].to(attn.o_proj.weight.dtype))
        new[p + "self_attn.o_proj"] = scaled(h, cols)
        # up -> down
        h = hess[p + "mlp.down_proj"]
        s = _scales(h, n, [mlp.down_proj.weight], alpha)
        mlp.up_proj.weight.div_(s[:, None].to(mlp.up_proj.weight.dtype))
        mlp.down_proj.weight.mul_(s[None, :].to(mlp.down_proj.weight.dtype))
        new[p + "mlp.down_proj"] = scaled(h, s)
    return out.eval(), new
