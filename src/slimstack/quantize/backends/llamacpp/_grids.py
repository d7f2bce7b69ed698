"""The integer grids of llama.cpp's block types, in torch, and their byte layouts.

A grid fits a scale (and, for the ``_1`` types, a minimum) to each group of weights of one row,
rounds values onto it, and packs codes into the bytes llama.cpp's kernels read. slimstack rounds
with its own algorithm (GPTQ error feedback in :mod:`._gptq`) and packs the codes itself, so the
GGUF file carries slimstack's values, not a re-rounding by another quantizer. Scales are rounded
to float16 before the codes are chosen, because that is what the kernels multiply by.

Layouts (per block of 32 weights; ggml's ``block_q4_0`` etc.):
``Q4_0`` [d f16][16 bytes: low nibble = weight j, high nibble = weight j+16], w = d*(q-8);
``Q4_1`` [d f16][m f16][16 bytes], w = d*q + m; ``Q5_0`` [d f16][qh u32][16 bytes], w = d*(q-16);
``Q5_1`` [d f16][m f16][qh u32][16 bytes], w = d*q + m; ``Q8_0`` [d f16][32 x int8], w = d*q;
``IQ4_NL`` [d f16][16 bytes as Q4_0], w = d*KVALUES[q]: 16 non-uniform levels, denser near zero, where
most weights are (ggml's ``kvalues_iq4nl``), at Q4_0's 4.5 bits per weight.

The symmetric 4/5-bit scales come from the importance-weighted search of :mod:`._search` (``search=True``)
or the plain rule (the value of largest magnitude lands on the end code, as ggml's reference quantizer).
``FORMATS`` adds the K-quants of :mod:`._kquants` (super-blocks of 256) to these legacy grids.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from . import _search
from ._kquants import K_GRIDS

__all__ = ["Grid", "GRIDS", "FORMATS", "BLOCK", "IQ4NL_VALUES", "pack"]

BLOCK = 32  # every legacy llama.cpp block type quantizes 32 consecutive inputs with one scale
IQ4NL_VALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)  # ggml's kvalues_iq4nl


@dataclasses.dataclass(frozen=True)
class Grid:
    """One block type: code range, symmetric or with a minimum, and bits per weight on disk."""

    name: str
    qmin: int
    qmax: int
    affine: bool  # True: w = d*q + m (q in [0, qmax]); False: w = d*q (q in [qmin, qmax])
    bpw: float
    levels: tuple[int, ...] | None = None  # non-uniform grid: w = d*levels[q], q an index in [qmin, qmax]

    @property
    def uniform(self) -> bool:
        """Whether codes are evenly spaced integers (what slimstack's torch int4/int8 Linears hold)."""
        return self.levels is None

    def fit(self, w: torch.Tensor, clip: float | torch.Tensor = 1.0, imp: np.ndarray | None = None,
            search: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scale (and minimum) per group; ``w`` is (rows, groups, group_size); ``clip`` shrinks the range;
        ``search`` picks symmetric 4/5-bit scales by the weighted error under ``imp`` (broadcastable to ``w``)."""
        if search and not self.affine:
            d = _search.symmetric(w.detach().float().numpy(), imp, self.qmin, self.qmax, levels=self.levels)
            return torch.from_numpy(d).half().float(), None
        if self.levels is not None:  # the value of largest magnitude maps to the most negative level
            idx = w.abs().argmax(-1, keepdim=True)
            return (torch.gather(w, -1, idx).squeeze(-1) * clip / self.levels[0]).half().float(), None
        if self.affine:
            lo, hi = w.amin(-1), w.amax(-1)
            lo, hi = lo * clip, hi * clip
            d = ((hi - lo) / self.qmax).half().float()
            return d, lo.half().float()
        if self.qmin == -self.qmax:  # Q8_0: d = amax / 127
            d = w.abs().amax(-1) * clip / self.qmax
        else:  # Q4_0 / Q5_0: the value of largest magnitude maps to qmin exactly (ggml: d = max / -8)
            idx = w.abs().argmax(-1, keepdim=True)
            d = torch.gather(w, -1, idx).squeeze(-1) * clip / self.qmin
        return d.half().float(), None

    def codes(self, w: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        """Integer codes for ``w`` (..., n) given per-element-broadcastable ``d`` and ``m``."""
        safe = torch.where(d == 0, torch.ones_like(d), d)
        x = (w - m) / safe if self.affine else w / safe
        if self.levels is not None:
            q = torch.from_numpy(_search.nearest(x.detach().float().numpy(), np.asarray(self.levels, np.float32)))
            q = q.to(x.dtype)
            return torch.where(d == 0, torch.full_like(q, self.zero_code), q)
        q = torch.floor(x + 0.5).clamp_(self.qmin, self.qmax)
        return torch.where(d == 0, torch.zeros_like(q), q)

    @property
    def zero_code(self) -> int:
        """The code of a block whose scale is 0 (any code decodes to 0 there; this one is the level nearest 0)."""
        return 0 if self.levels is None else int(np.abs(np.asarray(self.levels)).argmin())

    def value(self, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        if self.levels is not None:
            return torch.tensor(self.levels, dtype=d.dtype)[q.long()] * d
        return q * d + m if self.affine else q * d

    def round(self, w: torch.Tensor, group: int, clip: float = 1.0, imp: np.ndarray | None = None,
              search: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Round-to-nearest of a whole (rows, cols) matrix: codes (rows, cols), d and m (rows, cols/group);
        ``imp`` (cols,) is the per-input importance of the scale search."""
        g = w.reshape(w.shape[0], -1, group)
        d, m = self.fit(g, clip, None if imp is None else imp.reshape(1, -1, group), search)
        q = self.codes(g, d[..., None], None if m is None else m[..., None])
        return q.reshape(w.shape), d, m

    def dequantize(self, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
        rows, cols = q.shape
        g = q.reshape(rows, d.shape[1], -1)
        out = self.value(g, d[..., None], None if m is None else m[..., None])
        return out.reshape(rows, cols)


GRIDS = {
    "Q4_0": Grid("Q4_0", -8, 7, False, 4.5),
    "Q4_1": Grid("Q4_1", 0, 15, True, 5.0),
    "Q5_0": Grid("Q5_0", -16, 15, False, 5.5),
    "Q5_1": Grid("Q5_1", 0, 31, True, 6.0),
    "Q8_0": Grid("Q8_0", -127, 127, False, 8.5),
    "IQ4_NL": Grid("IQ4_NL", 0, 15, False, 4.5, IQ4NL_VALUES),
}
FORMATS = {**GRIDS, **K_GRIDS}  # every block type slimstack writes: name -> grid (``.bpw`` bits per weight)


def _f16(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float16).numpy().reshape(-1, 1).view(np.uint8)


def _nibbles(lo4: np.ndarray) -> np.ndarray:
    """(blocks, 32) values in [0, 16) -> (blocks, 16) bytes: weight j low, weight j+16 high."""
    return (lo4[:, :16] | (lo4[:, 16:] << 4)).astype(np.uint8)


def _high_bits(q: np.ndarray) -> np.ndarray:
    """(blocks, 32) 5-bit codes -> (blocks, 4) bytes of a little-endian uint32 of the fifth bits."""
    bits = ((q >> 4) & 1).astype(np.uint32) << np.arange(32, dtype=np.uint32)
    return bits.sum(axis=1, dtype=np.uint32).astype("<u4").reshape(-1, 1).view(np.uint8)


def pack(grid: Grid, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None) -> np.ndarray:
    """Codes (rows, cols) with per-32 scales -> uint8 (rows, cols/32 * block bytes), ggml's layout."""
    if d.shape[1] * BLOCK != q.shape[1]:
        raise ValueError(f"{grid.name} packs blocks of {BLOCK}; got {q.shape[1]} columns with {d.shape[1]} scales")
    rows, cols = q.shape
    qb = q.detach().to(torch.int64).numpy().reshape(-1, BLOCK)
    parts = [_f16(d)]
    if grid.affine:
        parts.append(_f16(m))
    if grid.name == "Q8_0":
        parts.append(qb.astype(np.int8).view(np.uint8))
    else:
        u = qb - grid.qmin  # stored unsigned: Q4_0 q+8, Q5_0 q+16; the affine types and IQ4_NL's indices are >= 0
        if grid.qmax - grid.qmin == 31:
            parts.append(_high_bits(u))
        parts.append(_nibbles(u & 0xF))
    return np.concatenate(parts, axis=1).reshape(rows, -1)
