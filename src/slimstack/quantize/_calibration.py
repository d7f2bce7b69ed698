"""Calibration: record the activations entering each layer, then turn them into int8 ranges.

An observer reads a (min, max) clip range from the recorded values: "minmax" takes the extremes;
"percentile" clips the tails; "mse" picks the clip that minimises the mean squared quantization error;
"entropy" the one that minimises the KL divergence between the value histogram and its quantized
version (TensorRT's method). A seeded reservoir of values per layer keeps memory bounded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ._data import batches, call

__all__ = ["ActivationStats", "collect", "qparams", "OBSERVER_FUNCS"]

_RESERVOIR = 65536
_CLIPS = np.linspace(0.2, 1.0, 33)


class ActivationStats:
    """Running min/max, per-input-channel |max| (for SmoothQuant) and a value sample of one layer's input."""

    def __init__(self, seed: int):
        self.min, self.max = np.inf, -np.inf
        self.channel_absmax: torch.Tensor | None = None
        self.sample = np.empty(0, dtype=np.float32)
        self._rng = np.random.default_rng(seed)

    def update(self, x: torch.Tensor, channel_dim: int) -> None:
        x = x.detach().float()
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))
        dims = [d for d in range(x.dim()) if d != channel_dim % x.dim()]
        cmax = x.abs().amax(dim=dims)
        self.channel_absmax = cmax if self.channel_absmax is None else torch.maximum(self.channel_absmax, cmax)
        flat = x.reshape(-1).numpy()
        take = min(len(flat), _RESERVOIR // 4)
        pick = flat[self._rng.choice(len(flat), size=take, replace=False)] if take < len(flat) else flat
        self.sample = np.concatenate([self.sample, pick])
        if len(self.sample) > _RESERVOIR:
            self.sample = self._rng.choice(self.sample, size=_RESERVOIR, replace=False)


def collect(model: nn.Module, names: list[str], inputs: Any, *, batch_size: int = 64, seed: int = 0,
            transform: dict[str, torch.Tensor] | None = None) -> dict[str, ActivationStats]:
    """Run ``inputs`` through ``model`` and record the input of each module in ``names``.

    ``transform`` maps a layer name to a per-channel divisor applied before recording (SmoothQuant's
    view of the activations after smoothing).
    """
    modules = dict(model.named_modules())
    stats = {n: ActivationStats(seed + i) for i, n in enumerate(names)}
    hooks = []
    for n in names:
        channel_dim = 1 if isinstance(modules[n], nn.Conv2d) else -1

        def hook(_m: nn.Module, args: tuple, n: str = n, cd: int = channel_dim) -> None:
            x = args[0]
            if transform and n in transform:
                x = x / transform[n]
            stats[n].update(x, cd)

        hooks.append(modules[n].register_forward_pre_hook(hook))
    _run_hooked(model, inputs, batch_size, hooks)
    return stats


def _run_hooked(model: nn.Module, inputs: Any, batch_size: int, hooks: list) -> None:
    """Run ``inputs`` through ``model`` in batches, then remove ``hooks`` (also on error)."""
    try:
        with torch.inference_mode():
            for _, batch in batches(model, inputs, batch_size):
                call(model, batch)
    finally:
        for h in hooks:
            h.remove()


def seen_rows(model: nn.Module, names: list[str], inputs: Any, *, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """The ids each embedding in ``names`` looks up while ``inputs`` run through ``model`` (sorted, unique)."""
    modules = dict(model.named_modules())
    found: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [modules[n].register_forward_pre_hook(lambda _m, args, n=n: found[n].append(torch.unique(args[0])))
             for n in names]
    _run_hooked(model, inputs, batch_size, hooks)
    return {n: torch.unique(torch.cat(v)) if v else torch.zeros(0, dtype=torch.long) for n, v in found.items()}


def _u8(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    return scale, int(np.clip(round(-lo / scale), 0, 255))


def _qdq(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


def _minmax(s: ActivationStats, _p: float) -> tuple[float, float]:
    return s.min, s.max


def _percentile(s: ActivationStats, p: float) -> tuple[float, float]:
    lo, hi = np.percentile(s.sample, [100.0 - p, p])
    return float(lo), float(hi)


def _search(s: ActivationStats, loss) -> tuple[float, float]:
    best, best_range = np.inf, (s.min, s.max)
    for c in _CLIPS:
        lo, hi = s.min * c, s.max * c
        err = loss(s.sample, *_u8(lo, hi))
        if err < best:
            best, best_range = err, (lo, hi)
    return best_range


def _mse(s: ActivationStats, _p: float) -> tuple[float, float]:
    return _search(s, lambda x, scale, zp: float(np.mean((x - _qdq(x, scale, zp)) ** 2)))


def _entropy(s: ActivationStats, _p: float) -> tuple[float, float]:
    """TensorRT's calibration: the clip whose 256-level histogram keeps the most information (least KL)."""
    lo0, hi0 = min(s.min, 0.0), max(s.max, 0.0)
    best, best_range = np.inf, (lo0, hi0)
    for c in _CLIPS:
        lo, hi = lo0 * c, hi0 * c
        # KL alone happily clips a discrete or bimodal input (image pixels) hard; never clip > 0.1% of values.
        if np.mean((s.sample < lo) | (s.sample > hi)) > 1e-3:
            continue
        # P: 2048-bin histogram of the clipped values (outliers land in the edge bins).
        p, _ = np.histogram(np.clip(s.sample, lo, hi), bins=2048, range=(lo, hi + 1e-12))
        p = p.astype(np.float64)
        # Q: P merged into 256 levels, each level's mass spread back over its non-empty bins.
        q = np.zeros_like(p)
        for chunk in np.array_split(np.arange(2048), 256):
            nz = p[chunk] > 0
            if nz.any():
                q[chunk[nz]] = p[chunk].sum() / nz.sum()
        mask = p > 0
        pn, qn = p[mask] / p.sum(), q[mask] / q.sum()
        kl = float(np.sum(pn * np.log(pn / qn)))
        if kl < best:
            best, best_range = kl, (lo, hi)
    return best_range


OBSERVER_FUNCS = {"minmax": _minmax, "percentile": _percentile, "mse": _mse, "entropy": _entropy}


def qparams(stats: ActivationStats, observer: str, percentile: float = 99.99) -> tuple[float, int]:
    """uint8 (scale, zero point) for one layer's input under ``observer``."""
    lo, hi = OBSERVER_FUNCS[observer](stats, percentile)
    return _u8(lo, hi)
