"""llama.cpp's K-quant grids (Q4_K, Q5_K, Q6_K): super-blocks of 256 inputs with quantized sub-block scales.

A super-block holds one float16 scale ``D`` (and for Q4_K/Q5_K a float16 ``Dmin``) and per
sub-block integer scales: Q4_K/Q5_K have 8 sub-blocks of 32 with 6-bit scale ``sc`` and 6-bit
minimum ``mi``, ``w = D*sc*q - Dmin*mi`` (q in [0, 15] / [0, 31]); Q6_K has 16 sub-blocks of 16 with
an int8 scale, ``w = D*sc*(q - 32)``. Only layers whose input size is a multiple of 256 can use them
(for SmolLM2 that is ffn_down, 1536 inputs; its 576-input tensors cannot, which is why llama.cpp's
own Q4_K_M falls back to Q5_0 / Q5_1 / Q8_0 there).

Fitting is split so GPTQ can refit sub-block scales from the error-updated weights: ``super_fit``
fixes ``D`` / ``Dmin`` from a whole super-block (the scale search of :mod:`._search` per sub-block,
then the largest), ``sub_fit`` quantizes one sub-block's searched scale (and minimum) onto that
super scale. Byte layouts follow ggml-common.h ``block_q4_K`` / ``block_q5_K`` / ``block_q6_K``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from . import _search

__all__ = ["KGrid", "K_GRIDS", "QK_K", "pack_k"]

QK_K = 256


def _f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class KGrid:
    """One K-quant type: code range, sub-block size, the integer range of sub-scales, bits per weight."""

    name: str
    qmin: int
    qmax: int
    affine: bool
    sub: int
    smin: int
    smax: int
    bpw: float

    def _raw(self, g: np.ndarray, imp: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        if self.affine:
            return _search.affine(g, imp, self.qmax, min_le_zero=True)
        return _search.symmetric(g, imp, self.qmin, self.qmax), None

    def super_fit(self, g: np.ndarray, imp: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(D, Dmin) per row of a super-block ``g`` (rows, 256); ``imp`` (256,) input importance or None."""
        rows = g.shape[0]
        gs = g.reshape(rows, -1, self.sub)
        s, mn = self._raw(gs, None if imp is None else imp.reshape(1, -1, self.sub))
        if self.affine:
            return _f16(s.max(1) / self.smax), _f16((-mn).max(1) / self.smax)
        idx = np.abs(s).argmax(1)
        big = s[np.arange(rows), idx]
        return _f16(big / self.smin), None  # Q6_K: the largest-magnitude scale maps to -128

    def sub_fit(self, g: np.ndarray, imp: np.ndarray | None, big: np.ndarray, bigmin: np.ndarray | None):
        """Integer sub-scales of one sub-block ``g`` (rows, sub) on super scales ``big``/``bigmin``:
        (sc, mi, d, m) with effective ``w = d*q + m`` (``m``, ``mi`` None for Q6_K)."""
        s, mn = self._raw(g, imp)
        safe = np.where(big == 0, 1.0, big)
        sc = np.where(big == 0, 0, np.clip(np.rint(s / safe), self.smin, self.smax)).astype(np.int32)
        d = (big * sc).astype(np.float32)
        if not self.affine:
            return sc, None, d, None
        safe = np.where(bigmin == 0, 1.0, bigmin)
        mi = np.where(bigmin == 0, 0, np.clip(np.rint(-mn / safe), 0, self.smax)).astype(np.int32)
        return sc, mi, d, -(bigmin * mi).astype(np.float32)

    def codes(self, g: np.ndarray, d: np.ndarray, m: np.ndarray | None) -> np.ndarray:
        safe = np.where(d == 0, 1.0, d)
        x = (g - m) / safe if m is not None else g / safe
        return np.where(d == 0, 0.0, np.clip(np.rint(x), self.qmin, self.qmax)).astype(np.float32)

    def round(self, w: torch.Tensor, imp: np.ndarray | None = None):
        """Round-to-nearest (with scale search) of a (rows, cols) matrix: q, d, m (per sub-block), extra."""
        g = w.detach().float().numpy()
        rows, cols = g.shape
        if cols % QK_K:
            raise ValueError(f"{self.name} needs inputs in multiples of {QK_K}; got {cols}")
        ns = cols // self.sub
        q = np.zeros_like(g)
        d = np.zeros((rows, ns), np.float32)
        m = np.zeros((rows, ns), np.float32) if self.affine else None
        ex = {"D": np.zeros((rows, cols // QK_K), np.float32), "sc": np.zeros((rows, ns), np.int32)}
        if self.affine:
            ex["Dmin"], ex["mi"] = np.zeros((rows, cols // QK_K), np.float32), np.zeros((rows, ns), np.int32)
        for b in range(cols // QK_K):
            sl = slice(b * QK_K, (b + 1) * QK_K)
            big, bigmin = self.super_fit(g[:, sl], None if imp is None else imp[sl])
            ex["D"][:, b] = big
            if self.affine:
                ex["Dmin"][:, b] = bigmin
            for j in range(QK_K // self.sub):
                c0 = b * QK_K + j * self.sub
                k = c0 // self.sub
                cs = slice(c0, c0 + self.sub)
                sc, mi, dd, mm = self.sub_fit(g[:, cs], None if imp is None else imp[cs], big, bigmin)
                ex["sc"][:, k], d[:, k] = sc, dd
                if self.affine:
                    ex["mi"][:, k], m[:, k] = mi, mm
                q[:, cs] = self.codes(g[:, cs], dd[:, None], None if mm is None else mm[:, None])
        return torch.from_numpy(q), torch.from_numpy(d), None if m is None else torch.from_numpy(m), ex

    def dequantize(self, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        rows, cols = q.shape
        g = q.reshape(rows, d.shape[1], -1)
        out = g * d[..., None] + m[..., None] if m is not None else g * d[..., None]
        return out.reshape(rows, cols)


K_GRIDS = {
    "Q4_K": KGrid("Q4_K", 0, 15, True, 32, 0, 63, 4.5),
    "Q5_K": KGrid("Q5_K", 0, 31, True, 32, 0, 63, 5.5),
    "Q6_K": KGrid("Q6_K", -32, 31, False, 16, -128, 127, 6.5625),
}


def _h16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).astype(np.float16).reshape(-1, 1).view(np.uint8)


def _scales12(sc: np.ndarray, mi: np.ndarray) -> np.ndarray:
    """(blocks, 8) 6-bit scales and minima -> (blocks, 12) bytes (ggml's get_scale_min_k4 layout)."""
    sc, mi = sc.astype(np.uint8), mi.astype(np.uint8)
    a = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    b = mi[:, :4] | ((mi[:, 4:] >> 4) << 6)
    c = (sc[:, 4:] & 0xF) | ((mi[:, 4:] & 0xF) << 4)
    return np.concatenate([a, b, c], axis=1).astype(np.uint8)


def pack_k(grid: KGrid, q: torch.Tensor, ex: dict) -> np.ndarray:
    """Codes (rows, cols) and the super/sub scales of :meth:`KGrid.round` -> uint8 (rows, cols/256 * bytes)."""
    rows, cols = q.shape
    nb = rows * cols // QK_K
    u = (q.detach().to(torch.int64).numpy() - grid.qmin).astype(np.uint8).reshape(nb, QK_K)
    sub_per = QK_K // grid.sub
    sc = ex["sc"].reshape(nb, sub_per)
    if grid.affine:
        lo = (u & 0xF).reshape(nb, 4, 2, 32)
        qs = (lo[:, :, 0] | (lo[:, :, 1] << 4)).reshape(nb, 128)
        parts = [_h16(ex["D"]), _h16(ex["Dmin"]), _scales12(sc, ex["mi"].reshape(nb, sub_per))]
        if grid.qmax == 31:
            hb = ((u >> 4) & 1).reshape(nb, 8, 32).astype(np.uint8)
            parts.append((hb << np.arange(8, dtype=np.uint8)[None, :, None]).sum(1, dtype=np.uint8))
        parts.append(qs.astype(np.uint8))
    else:  # Q6_K: [ql 128][qh 64][scales 16 x int8][D f16]
        h = u.reshape(nb, 2, 128)
        ql = ((h[:, :, :64] & 0xF) | ((h[:, :, 64:] & 0xF) << 4)).reshape(nb, 128)
        hi = ((h >> 4) & 3).reshape(nb, 2, 4, 32)
        qh = (hi << (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]).sum(2, dtype=np.uint8).reshape(nb, 64)
        parts = [ql.astype(np.uint8), qh, sc.astype(np.int8).view(np.uint8), _h16(ex["D"])]
    return np.concatenate(parts, axis=1).reshape(rows, -1)
