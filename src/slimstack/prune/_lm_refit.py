"""Closed-form recovery after width pruning: refit the layer that reads the cut features by least squares.

When FFN neuron ``j`` goes, ``down_proj`` loses input ``j``; when a head goes, ``o_proj`` loses its
``head_dim`` inputs. The kept columns can absorb much of what the cut ones contributed, because
activations are correlated. With ``H = sum_x x x^T`` over the calibration tokens (the layer's
full, unpruned input), ``K`` the kept and ``R`` the removed inputs, the new weight minimising
``sum_x ||W x - W' x_K||^2`` is ``W' = W[:, K] + W[:, R] H[R, K] (H[K, K] + lambda I)^{-1}``
(``lambda``: a small damping, a share of the mean diagonal, applied to the correction only, so
columns that carried nothing leave the kept ones exactly as they were). One calibration pass, one small solve per layer: no
gradient steps. This is the reconstruction step of structured OBS-style pruners (e.g. ZipLM,
SlimGPT); here it follows the activation-norm choice of what to cut.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["input_hessians", "refit_columns"]

DAMP = 0.01


def input_hessians(lm: Any, layers: dict[str, nn.Module], windows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``X^T X`` (float64) of each layer's input over every calibration token, in one forward pass."""
    sums: dict[str, torch.Tensor] = {}
    hooks = []

    def hook(name: str):
        def fn(_mod: nn.Module, args: tuple, _out: Any) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            h = x.T @ x
            sums[name] = sums[name] + h if name in sums else h
        return fn

    for name, mod in layers.items():
        hooks.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            for w in windows:
                lm.model(input_ids=w[None], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return sums


def refit_columns(weight: torch.Tensor, keep: torch.Tensor, hessian: torch.Tensor, damp: float = DAMP
                  ) -> tuple[torch.Tensor, float]:
    """The (out, len(keep)) weight that best reproduces ``weight``'s outputs from the kept inputs alone.

    Returns the new weight and the share of the output error (``tr((W - W'S) H (W - W'S)^T)``
    relative to dropping the columns without refit) that the refit removed, in [0, 1].
    """
    w = weight.detach().double()
    h = hessian.double()
    hk = h[keep][:, keep]
    lam = damp * float(torch.diagonal(hk).mean().clamp(min=1e-12))
    cut = torch.ones(w.shape[1], dtype=torch.bool)
    cut[keep] = False
    rhs = w[:, cut] @ h[cut][:, keep]  # (out, k): what the cut inputs wrote, seen through their correlation
    new = w[:, keep] + torch.linalg.solve(hk + lam * torch.eye(len(keep), dtype=h.dtype), rhs.T).T

    def err(wk: torch.Tensor) -> float:
        full = torch.zeros_like(w)
        full[:, keep] = wk
        d = w - full
        return float(((d @ h) * d).sum())

    plain, refit = err(w[:, keep]), err(new)
    gain = 0.0 if plain <= 0 else max(0.0, min(1.0, 1.0 - refit / plain))
    return new.to(weight.dtype), gain
