"""Small self-contained SVG charts (no plotting library, no external assets)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["scatter", "bars", "line"]

W, H, PAD = 560, 340, 56
TOP = 24
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"]


def _scale(values: Sequence[float], lo_px: float, hi_px: float, log: bool = False):
    vals = [math.log10(v) if log else v for v in values]
    lo, hi = min(vals), max(vals)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad

    def f(v: float) -> float:
        v = math.log10(v) if log else v
        return lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px)

    return f, lo, hi


def _frame(title: str, xlabel: str, ylabel: str, body: str, klass: str) -> str:
    return (
        f'<svg class="chart {klass}" role="img" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{html.escape(title)}</title>'
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>'
        f'<text x="{W / 2}" y="12" text-anchor="middle" font-size="13" font-weight="600">{html.escape(title)}</text>'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 16}" y2="{H - PAD}" stroke="#333"/>'
        f'<line x1="{PAD}" y1="{TOP}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>'
        f'<text x="{(W + PAD) / 2}" y="{H - 14}" text-anchor="middle" font-size="13">{html.escape(xlabel)}</text>'
        f'<text x="16" y="{(H - PAD) / 2}" text-anchor="middle" font-size="13" '
        f'transform="rotate(-90 16 {(H - PAD) / 2})">{html.escape(ylabel)}</text>{body}</svg>'
    )


def _ticks(f, lo: float, hi: float, axis: str, log: bool) -> str:
    out = []
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        real = 10**v if log else v
        label = f"{real:.3g}"
        if axis == "x":
            px = f(real)
            out.append(f'<text x="{px:.1f}" y="{H - PAD + 16}" text-anchor="middle" font-size="11">{label}</text>')
        else:
            py = f(real)
            out.append(f'<text x="{PAD - 6}" y="{py + 4:.1f}" text-anchor="end" font-size="11">{label}</text>'
                       f'<line x1="{PAD}" y1="{py:.1f}" x2="{W - 16}" y2="{py:.1f}" stroke="#eee"/>')
    return "".join(out)


def scatter(points: Sequence[tuple[str, float, float]], *, title: str, xlabel: str, ylabel: str,
            front: Sequence[str] = (), log_x: bool = False, klass: str = "scatter") -> str:
    """Labelled points (name, x, y); names in ``front`` are joined by a line (the Pareto front)."""
    pts = [(n, x, y) for n, x, y in points if x is not None and y is not None and (x > 0 or not log_x)]
    if not pts:
        return ""
    fx, xlo, xhi = _scale([p[1] for p in pts], PAD, W - 16, log_x)
    fy, ylo, yhi = _scale([p[2] for p in pts], H - PAD, TOP + 6)
    body = [_ticks(fx, xlo, xhi, "x", log_x), _ticks(fy, ylo, yhi, "y", False)]
    fr = sorted([p for p in pts if p[0] in front], key=lambda p: p[1])
    if len(fr) > 1:
        d = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for _, x, y in fr)
        body.append(f'<polyline class="pareto" points="{d}" fill="none" stroke="#16a34a" stroke-width="2" '
                    'stroke-dasharray="5 3"/>')
    for i, (n, x, y) in enumerate(pts):
        c = PALETTE[i % len(PALETTE)]
        px, py = fx(x), fy(y)
        near_right = px > W - 140  # keep labels inside the frame
        label_x, anchor = (px - 8, "end") if near_right else (px + 8, "start")
        body.append(f'<circle class="point" cx="{px:.1f}" cy="{py:.1f}" r="6" fill="{c}">'
                    f'<title>{html.escape(n)}: {x:.4g}, {y:.4g}</title></circle>'
                    f'<text x="{label_x:.1f}" y="{py - 8:.1f}" font-size="12" fill="{c}" text-anchor="{anchor}">'
                    f'{html.escape(n)}</text>')
    return _frame(title, xlabel, ylabel, "".join(body), klass)


def bars(items: Sequence[tuple[str, float]], *, title: str, ylabel: str, klass: str = "bars") -> str:
    items = [(n, v) for n, v in items if v is not None][:40]
    if not items:
        return ""
    fy, ylo, yhi = _scale([0.0] + [v for _, v in items], H - PAD, TOP + 6)
    bw = (W - PAD - 24) / len(items)
    body = [_ticks(fy, ylo, yhi, "y", False)]
    for i, (n, v) in enumerate(items):
        x = PAD + 4 + i * bw
        y0, y1 = fy(0.0), fy(v)
        body.append(f'<rect class="bar" x="{x:.1f}" y="{min(y0, y1):.1f}" width="{max(bw - 4, 1):.1f}" '
                    f'height="{abs(y1 - y0):.1f}" fill="#2563eb"><title>{html.escape(n)}: {v:.4g}</title></rect>')
        if len(items) <= 16:
            body.append(f'<text x="{x + bw / 2:.1f}" y="{H - PAD + 14}" font-size="9" text-anchor="middle">'
                        f'{html.escape(n[-14:])}</text>')
    return _frame(title, "", ylabel, "".join(body), klass)


def line(series: Sequence[tuple[float, float]], *, title: str, xlabel: str, ylabel: str, klass: str = "line") -> str:
    pts = sorted((x, y) for x, y in series if x is not None and y is not None)
    if len(pts) < 2:
        return ""
    fx, xlo, xhi = _scale([p[0] for p in pts], PAD, W - 16)
    fy, ylo, yhi = _scale([p[1] for p in pts], H - PAD, TOP + 6)
    d = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in pts)
    body = (_ticks(fx, xlo, xhi, "x", False) + _ticks(fy, ylo, yhi, "y", False)
            + f'<polyline points="{d}" fill="none" stroke="#2563eb" stroke-width="2"/>')
    return _frame(title, xlabel, ylabel, body, klass)
