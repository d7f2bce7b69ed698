"""Scale search per group: the scale (and minimum) that minimises the importance-weighted rounding error.

The plain rule (the value of largest magnitude lands on the end code) wastes range when one weight
is an outlier. Like llama.cpp's ``make_qx_quants`` / ``make_qkx2_quants``, a few candidate scales
around the plain one are tried: each gives codes, the codes give the least-squares optimal scale
(and minimum) under the per-input importance, and the candidate of smallest weighted error wins.
The importance is the diagonal of the layer's input Hessian ``X^T X`` where there is one (what
llama.cpp's imatrix holds), else the squared weights. All arrays are numpy float32, shaped
(..., group); the search is vectorised over the leading axes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["symmetric", "affine", "nearest", "STEPS"]

STEPS = tuple(0.1 * k for k in range(-6, 7))  # code-range offsets tried around the plain scale


def _weights(g: np.ndarray, imp: np.ndarray | None) -> np.ndarray:
    if imp is None:
        return g * g + 1e-12
    return np.broadcast_to(imp, g.shape).astype(np.float32) + 1e-12


def nearest(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted ``levels`` for every element of ``x`` (ties go to the lower level,
    as ggml's ``best_index_int8``)."""
    mid = (levels[1:] + levels[:-1]) / 2.0
    return np.searchsorted(mid, x, side="left")


def _codes(x: np.ndarray, qmin: int, qmax: int, lv: np.ndarray | None) -> np.ndarray:
    """Code values (not indices) nearest to ``x`` on the uniform range or on the levels ``lv``."""
    if lv is None:
        return np.clip(np.rint(x), qmin, qmax)
    return lv[nearest(x, lv)]


def _anchor_codes(qmin: int, qmax: int, lv: np.ndarray | None, near: np.ndarray) -> list[np.ndarray]:
    """Non-zero codes the most important value of a group is tried on: every code of a 4/5-bit grid; for
    Q8_0 the few codes around where the plain scale puts it (``near``: that code per group)."""
    if lv is not None:
        return [np.full(near.shape, v, np.float32) for v in lv if v != 0]
    if qmax - qmin <= 31:
        return [np.full(near.shape, float(k), np.float32) for k in range(qmin, qmax + 1) if k != 0]
    out = []
    for off in (-2, -1, 0, 1, 2):
        k = np.clip(near + off, qmin, qmax)
        out.append(np.where(k == 0, np.sign(near) + (near == 0), k).astype(np.float32))
    return out


def symmetric(g: np.ndarray, imp: np.ndarray | None, qmin: int, qmax: int,
              steps: tuple[float, ...] = STEPS, levels: tuple[int, ...] | None = None) -> np.ndarray:
    """Scale per group for ``w = d*q``, q in [qmin, qmax]; the largest-magnitude value's sign picks the side.

    Two families of candidates: scales around the plain rule (the value of largest magnitude on the end
    code, nudged by ``steps``), and *anchored* scales that put the group's most important value
    (largest ``importance * w^2``) exactly on a code, clipping the rest if need be. The second family
    matters where one input channel carries a massive activation (SmolLM2's down projections have
    channels with X^T X thousands of times the median): the weight on that channel must be exact, and no
    scale near the plain one holds it. ``levels`` (sorted integers, e.g. IQ4_NL's 16 non-uniform values)
    replaces the uniform codes: ``w = d*levels[i]``.
    """
    w = _weights(g, imp)
    idx = np.abs(g).argmax(-1)[..., None]
    vmax = np.take_along_axis(g, idx, -1)[..., 0]
    lv = None if levels is None else np.asarray(levels, np.float32)
    nmax = float(-qmin) if lv is None else float(-lv[0])
    unit = 1.0 if lv is None else float(lv[1] - lv[0]) / 2  # offsets in half steps of the outermost interval
    best_d = vmax / -nmax  # the plain rule: vmax -> the most negative code exactly
    best_e = np.full(vmax.shape, np.inf, np.float32)
    safe = np.where(vmax == 0, 1.0, vmax)
    anchor = np.take_along_axis(g, (w * g * g).argmax(-1)[..., None], -1)[..., 0]
    near = np.rint(anchor / np.where(best_d == 0, 1.0, best_d))
    scales = [-(nmax + s * unit) / safe for s in (0.0, *steps)]
    for k in _anchor_codes(qmin, qmax, lv, near):
        scales.append(np.where(anchor == 0, 0.0, k / np.where(anchor == 0, 1.0, anchor)))
    for iscale in scales:
        q = _codes(g * iscale[..., None], qmin, qmax, lv)
        num = (w * g * q).sum(-1)
        den = (w * q * q).sum(-1)
        d = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0).astype(np.float32)
        e = (w * (g - d[..., None] * q) ** 2).sum(-1)
        better = e < best_e
        best_d = np.where(better, d, best_d)
        best_e = np.where(better, e, best_e)
    return np.where(vmax == 0, 0.0, best_d).astype(np.float32)


def affine(g: np.ndarray, imp: np.ndarray | None, qmax: int, steps: tuple[float, ...] = STEPS,
           min_le_zero: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(scale, minimum) per group for ``w = d*q + m``, q in [0, qmax]; ``min_le_zero`` as the K-quants require."""
    w = _weights(g, imp)
    lo, hi = g.min(-1), g.max(-1)
    if min_le_zero:
        lo = np.minimum(lo, 0.0)
    rng = hi - lo
    safe = np.where(rng == 0, 1.0, rng)
    best_d, best_m = (rng / qmax).astype(np.float32), lo.astype(np.float32)
    best_e = np.full(lo.shape, np.inf, np.float32)
    sw = w.sum(-1)
    for s in (0.0, *steps):
        iscale = (qmax + s) / safe
        q = np.clip(np.rint((g - lo[..., None]) * iscale[..., None]), 0, qmax)
        # least squares for (d, m) with these codes: [Σwq² Σwq; Σwq Σw] [d m]^T = [Σwqx Σwx]^T
        sq, sqq = (w * q).sum(-1), (w * q * q).sum(-1)
        sx, sqx = (w * g).sum(-1), (w * q * g).sum(-1)
        det = sqq * sw - sq * sq
        ok = det > 1e-20 * np.maximum(sqq * sw, 1e-30)
        d = np.where(ok, (sqx * sw - sq * sx) / np.where(ok, det, 1.0), best_d)
        m = np.where(ok, (sqq * sx - sq * sqx) / np.where(ok, det, 1.0), best_m)
        if min_le_zero:  # m > 0 is not representable: refit d with m = 0
            pos = m > 0
            d = np.where(pos, np.where(sqq > 0, sqx / np.where(sqq > 0, sqq, 1.0), 0.0), d)
            m = np.where(pos, 0.0, m)
        d, m = d.astype(np.float32), m.astype(np.float32)
        e = (w * (g - d[..., None] * q - m[..., None]) ** 2).sum(-1)
        better = (e < best_e) & (d >= 0)
        best_d, best_m, best_e = np.where(better, d, best_d), np.where(better, m, best_m), np.where(better, e, best_e)
    return best_d.astype(np.float32), best_m.astype(np.float32)
