"""Calibrated rounding: GPTQ error feedback onto a llama.cpp grid, from per-Linear input Hessians.

GPTQ (Frantar et al., 2022) quantizes a weight matrix one input column at a time and spreads each
column's rounding error over the columns not yet quantized, weighted by the inverse Hessian
``H = X^T X`` of the layer's calibration inputs, so the layer's *output* error on those inputs is
minimised rather than the weight error. Group scales are fitted when a group is reached, from the
already-updated weights, as the reference implementation does. Rows are independent given ``H``,
so Linears that read the same input (q/k/v, gate/up) share one Hessian.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _search
from ._grids import Grid
from ._kquants import QK_K, KGrid

__all__ = ["collect_hessians", "gptq", "output_error", "linear_names"]


def linear_names(model: nn.Module) -> list[str]:
    """The decoder's Linear layers (the LM head excluded: it is handled with the tied embedding)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not n.endswith("lm_head")]


@torch.no_grad()
def collect_hessians(model: nn.Module, windows: Iterable[torch.Tensor], names: list[str],
                     head: bool = True) -> tuple[dict[str, torch.Tensor], int]:
    """``X^T X`` of each named Linear's input (and of the LM head's, as "lm_head") over token windows.

    Linears that see the same input tensor get the same accumulated matrix object, once.
    """
    hs: dict[str, torch.Tensor] = {}
    seen: dict[int, tuple[str, torch.Tensor]] = {}
    alias: dict[str, str] = {}
    hooks = []
    count = [0]

    def hook(name: str):
        def fn(mod: nn.Module, args: tuple, _out: Any) -> None:
            x = args[0]
            key = id(x)
            if key in seen and seen[key][1] is x:  # same input as a sibling (q/k/v, gate/up): share
                alias[name] = seen[key][0]
                return
            seen[key] = (name, x)  # holding x keeps its id unique for this forward pass
            x2 = x.reshape(-1, x.shape[-1]).float()
            if name not in hs:
                hs[name] = torch.zeros(x2.shape[1], x2.shape[1])
            hs[name].addmm_(x2.T, x2)
        return fn

    mods = dict(model.named_modules())
    targets = list(names) + (["lm_head"] if head and "lm_head" in mods else [])
    for n in targets:
        hooks.append(mods[n].register_forward_hook(hook(n)))
    try:
        for ids in windows:
            seen.clear()
            model(input_ids=ids.reshape(1, -1))
            count[0] += int(ids.numel())
    finally:
        for h in hooks:
            h.remove()
    for n, a in alias.items():
        hs[n] = hs[a]
    return hs, count[0]


def _inverse_chol(h: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    h = h.clone().double()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += torch.eye(h.shape[0], dtype=h.dtype) * damp * torch.diag(h).mean()
    for extra in (0.0, 1e-3, 1e-2, 1e-1):  # a nearly singular H (few tokens): damp more, not fail
        try:
            hh = h + torch.eye(h.shape[0], dtype=h.dtype) * extra * torch.diag(h).mean()
            hinv = torch.cholesky_inverse(torch.linalg.cholesky(hh))
            return torch.linalg.cholesky(hinv, upper=True).float(), dead
        except torch.linalg.LinAlgError:
            continue
    raise RuntimeError("GPTQ: the calibration Hessian is not positive definite even after damping")


def _fit(grid: Grid, g: np.ndarray, imp: np.ndarray | None = None,
         search: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """numpy twin of :meth:`Grid.fit` for one group (rows, size): the GPTQ inner loop runs in numpy,
    whose per-call overhead on these small vectors is a fraction of torch's."""
    if search and not grid.affine:
        d = _search.symmetric(g, imp, grid.qmin, grid.qmax, levels=grid.levels)
        return d.astype(np.float16).astype(np.float32), None
    if grid.levels is not None:
        d = g[np.arange(g.shape[0]), np.abs(g).argmax(1)] / grid.levels[0]
        return d.astype(np.float16).astype(np.float32), None
    if grid.affine:
        lo, hi = g.min(1), g.max(1)
        return ((hi - lo) / grid.qmax).astype(np.float16).astype(np.float32), lo.astype(np.float16).astype(np.float32)
    if grid.qmin == -grid.qmax:
        d = np.abs(g).max(1) / grid.qmax
    else:
        d = g[np.arange(g.shape[0]), np.abs(g).argmax(1)] / grid.qmin
    return d.astype(np.float16).astype(np.float32), None


@torch.no_grad()
def gptq(w: torch.Tensor, h: torch.Tensor, grid: Grid | KGrid, group: int, damp: float = 0.01,
         clip: float = 1.0, search: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict | None]:
    """Round ``w`` (rows, cols) onto ``grid`` with GPTQ; returns (q, d, m, extra).

    Legacy grids take one scale per ``group`` inputs, fitted when the group is reached (``search``:
    the scale of least error weighted by the Hessian's diagonal, llama.cpp's imatrix objective).
    K-quant grids fix the super-block scales when a super-block (256 inputs) is reached and fit each
    sub-block's integer scale (and minimum) from the error-updated weights when it starts; ``extra``
    holds those integers for packing (None for legacy grids).
    """
    hinv_t, dead = _inverse_chol(h, damp)
    imp = torch.diag(h).float().numpy().copy() if search else None
    w = w.detach().float().clone()
    w[:, dead] = 0
    w, hinv = w.numpy(), hinv_t.numpy()
    rows, cols = w.shape
    kq = isinstance(grid, KGrid)
    sub = grid.sub if kq else group
    block = QK_K if kq else group * max(1, 128 // group)
    if kq and cols % QK_K:
        raise ValueError(f"{grid.name} needs inputs in multiples of {QK_K}; got {cols}")
    q = np.zeros_like(w)
    ds = np.zeros((rows, cols // sub), np.float32)
    ms = np.zeros((rows, cols // sub), np.float32) if grid.affine else None
    ex = None
    if kq:
        ex = {"D": np.zeros((rows, cols // QK_K), np.float32), "sc": np.zeros((rows, cols // sub), np.int32)}
        if grid.affine:
            ex["Dmin"], ex["mi"] = np.zeros((rows, cols // QK_K), np.float32), np.zeros((rows, cols // sub), np.int32)
    lo_q, hi_q = float(grid.qmin), float(grid.qmax)
    levels = None if getattr(grid, "levels", None) is None else np.asarray(grid.levels, np.float32)
    d = m = big = bigmin = None
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, i1:i2].copy()
        err = np.zeros_like(w1)
        hb = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if kq and c % QK_K == 0:  # block == QK_K: w1 holds the super-block with every earlier update applied
                big, bigmin = grid.super_fit(w1[:, i:i + QK_K], None if imp is None else imp[c:c + QK_K])
                ex["D"][:, c // QK_K] = big
                if grid.affine:
                    ex["Dmin"][:, c // QK_K] = bigmin
            if c % sub == 0:
                gi = None if imp is None else imp[c:c + sub]
                if kq:
                    sc, mi, d, m = grid.sub_fit(w1[:, i:i + sub], gi, big, bigmin)
                    ex["sc"][:, c // sub] = sc
                    if grid.affine:
                        ex["mi"][:, c // sub] = mi
                else:
                    d, m = _fit(grid, w1[:, i:i + group] * clip, gi, search)
                ds[:, c // sub] = d
                if ms is not None:
                    ms[:, c // sub] = m
                safe = np.where(d == 0, 1.0, d).astype(np.float32)
                zero = d == 0
            col = w1[:, i]
            x = (col - m) / safe if m is not None else col / safe
            if levels is None:
                qc = np.clip(np.floor(x + 0.5), lo_q, hi_q)
                qc[zero] = 0
                val = qc * d + m if m is not None else qc * d
            else:  # a non-uniform grid (IQ4_NL): the nearest level, stored as its index
                qc = _search.nearest(x, levels).astype(np.float32)
                qc[zero] = grid.zero_code
                val = levels[qc.astype(np.int64)] * d
            q[:, c] = qc
            e = (col - val) / hb[i, i]
            w1[:, i:] -= np.outer(e, hb[i, i:])
            err[:, i] = e
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return torch.from_numpy(q), torch.from_numpy(ds), None if ms is None else torch.from_numpy(ms), ex


def output_error(w: torch.Tensor, wq: torch.Tensor, h: torch.Tensor, n: int) -> float:
    """Mean squared error of the layer output over the calibration tokens: tr(dW H dW^T) / n."""
    dw = (w.float() - wq.float())
    return float(((dw @ h) * dw).sum() / max(n, 1))
