"""Squared euclidean distances in the graph, computed once per point set and shared between members.

kNN members and RBF SVMs both need ``|x - t|^2`` against a fixed set of rows. One float64 Gemm
gives them all (``|x|^2 - 2 x.T + |t|^2``, the norms added inside the GEMM). scikit-learn clamps
at 0 before ranking; the graph does not (a full [N, M] float64 Max cost 0.1-0.5 ms): only a query
that duplicates two or more training rows ranks them by rounding noise instead of scikit-learn's
heap order, both arbitrary; distance weights clamp the k kept values. Integer data (digits' pixels) gives exact distances, so exact
ties stay ties; on other data the last bit can differ from scikit-learn's own BLAS order anyway. The compile run keeps every distance tensor it built, keyed by graph body, input
and point set; a later member whose rows are all in an earlier set (an SVC's support vectors are
training rows of the kNN beside it) reads that tensor instead of a MatMul of its own.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["sq_distances"]


class _Entry:
    def __init__(self, name: str, T: np.ndarray, graph):
        self.name, self.T = name, T
        self.graph = graph  # held so that no later graph body can reuse its id() while the cache lives
        self._index: dict[bytes, int] | None = None

    def columns(self, rows: np.ndarray) -> np.ndarray | None:
        """Column of each row of ``rows`` in this set (its first copy), or None when one is missing."""
        if self._index is None:
            self._index = {}
            for i, r in enumerate(self.T):
                self._index.setdefault(r.tobytes(), i)
        out = np.empty(len(rows), np.int64)
        for i, r in enumerate(rows):
            j = self._index.get(r.tobytes())
            if j is None:
                return None
            out[i] = j
        return out


def _cache(g) -> dict:
    return {} if g.ctx is None else g.ctx.distances


def sq_distances(g, x: str, T: np.ndarray, *, within: float = 0.0) -> tuple[str, np.ndarray, int]:
    """Float64 squared distances from the rows of ``x`` to the rows of ``T``, and where each row of ``T`` is.

    Returns ``(name, cols, M)``: ``name`` is ``[N, M]`` and ``cols[i]`` the column of ``T[i]`` among
    the M. With ``within=0`` (kNN: its own row order decides ties) that is ``T`` itself (M = len(T),
    ``cols = arange``). With ``within=r > 0`` an earlier set of the same graph
    body that holds every row of ``T`` and has at most ``r`` times as many rows is returned whole,
    with M its row count: the caller (an RBF SVM) folds the columns into its own
    weights, as a gather along the row axis costs more in ONNX Runtime than a second MatMul.
    """
    T = np.ascontiguousarray(T, dtype=np.float64)
    cache = _cache(g)
    key = (id(g), x, hashlib.sha1(T.tobytes()).hexdigest(), T.shape)
    if key in cache:
        return cache[key].name, np.arange(len(T)), len(T)
    if within > 0:
        for (gid, xname, _, _), entry in cache.items():
            if gid != id(g) or xname != x or entry.T.shape[1] != T.shape[1] or len(entry.T) > within * len(T):
                continue
            cols = entry.columns(T)
            if cols is not None:
                return entry.name, cols, len(entry.T)
    # one Gemm: [x, |x|^2] @ [[-2 T.T], [1 ... 1]] + |t|^2 (the two row-norm adds inside the GEMM)
    xx = g.op("ReduceSum", [g.op("Mul", [x, x]), g.const(np.array([1], np.int64), "ax")], "xx", keepdims=1)
    B = np.vstack([-2.0 * T.T, np.ones((1, len(T)))])
    d2 = g.op("Gemm", [g.op("Concat", [x, xx], "x_xx", axis=1), g.const(B, "m2t"),
                       g.const((T * T).sum(axis=1), "tt")], "d2")
    cache[key] = _Entry(d2, T, g)
    return d2, np.arange(len(T)), len(T)
