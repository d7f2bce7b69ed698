"""Kernel SVMs (``SVC`` / ``NuSVC``): the kernel as float64 GEMMs, libsvm's probability coupling in ORT.

skl2onnx maps an SVC onto ONNX's ``SVMClassifier``, whose ONNX Runtime kernel evaluates the RBF
kernel row by row in a scalar float32 loop (profiled: 32 % of the compiled digits stack's kernel
time at 256 rows, as much as the 1,000-tree HistGradientBoosting). Here the kernel matrix is one
float64 MatMul (RBF distances read from a kNN member over the same training rows when there is
one, see ``_distances``), the one-vs-one decision values a second float64 MatMul. The RBF
exponent is taken in float32 (ORT's vectorised Exp; float64 Exp is scalar), which moves the
probabilities by ~3e-7; pair sums stay float64 (float32 sums moved them by up to 2.5e-5).

``predict_proba``: libsvm's pairwise coupling (Platt sigmoids, then the iterative
``multiclass_probability``, whose stopping rule decides the result to ~1e-3, so it cannot be
replaced by the closed-form optimum) stays in ``SVMClassifier``, fed the decision values through a
linear kernel on unit "support vectors", one per class pair, so its per-pair sum returns each
decision value unchanged. ``predict`` (libsvm's vote) and ``decision_function`` (scikit-learn's
"ovr" / "ovo" shapes) are a few nodes on the decision values.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from ._distances import sq_distances
from ._errors import NotCompilable

__all__ = ["is_svc", "svc_proba", "svc_output"]


def is_svc(est) -> bool:
    from sklearn.svm import SVC, NuSVC

    return isinstance(est, SVC | NuSVC)


def _kernel(g, est, x: str, sv: np.ndarray) -> tuple[str, np.ndarray, int]:
    """Kernel values ``[N, M]``, the column of each support vector among the M, and M.

    RBF: ``exp(-gamma d2)`` with ``d2`` the float64 squared distances, read from a kNN's distance
    tensor when that set holds every support vector (M = its rows; the support vectors' columns
    are then picked by the pair weights, not by a gather), else computed for the support vectors.
    The other kernels from one float64 MatMul ``x @ sv.T``, as libsvm defines them.
    """
    kernel, gamma = est.kernel, float(est._gamma)
    if kernel == "rbf":
        d2, cols, width = sq_distances(g, x, sv, within=_SHARE_WITHIN)
        return _exp(g, d2, gamma), cols, width
    dot = g.op("MatMul", [x, g.const(np.ascontiguousarray(sv.T), "svT")], "k_dot")
    if kernel == "linear":
        k = dot
    else:
        inner = g.op("Add", [g.op("Mul", [dot, g.const(np.float64(gamma), "gamma")]),
                             g.const(np.float64(est.coef0), "coef0")], "k_in")
        k = (g.op("Pow", [inner, g.const(np.float64(est.degree), "degree")], "k_poly") if kernel == "poly"
             else g.op("Tanh", [inner], "k_sigmoid"))
    return k, np.arange(len(sv)), len(sv)


def _exp(g, d2: str, gamma: float) -> str:
    """float64 ``exp(-gamma d2)``: the exponent in float32 (ONNX Runtime's vectorised Exp), the result widened."""
    arg = g.op("Mul", [g.op("Cast", [d2], "d2f", to=TensorProto.FLOAT), g.const(np.float32(-gamma), "mgamma")], "karg")
    return g.op("Cast", [g.op("Exp", [arg], "k_rbf")], "kd", to=TensorProto.DOUBLE)


_SHARE_WITHIN = 3.0  # read a kNN's distances when its rows are at most 3x the support vectors (measured)


def _pair_coefficients(est) -> np.ndarray:
    """``[n_SV, n_pairs]``: decision value of pair (i, j) = kernel row @ column, as libsvm sums it."""
    dual = np.asarray(est._dual_coef_, dtype=np.float64)
    counts = np.asarray(est._n_support, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(counts)])
    k = len(counts)
    C = np.zeros((dual.shape[1], k * (k - 1) // 2))
    p = 0
    for i in range(k):
        for j in range(i + 1, k):
            C[start[i]:start[i + 1], p] = dual[j - 1, start[i]:start[i + 1]]
            C[start[j]:start[j + 1], p] = dual[i, start[j]:start[j + 1]]
            p += 1
    return C


def _coupling(g, dec: str, est) -> str:
    """libsvm's probabilities from decision values ``[N, n_pairs]`` (float32) via ORT's SVMClassifier."""
    k = len(est.classes_)
    P = k * (k - 1) // 2
    coef = np.zeros((k - 1, P), np.float32)  # class i's pseudo vectors: the pairs (i, j), j > i, in pair order
    per_class = [k - 1 - i for i in range(k)]
    p = 0
    for i in range(k):
        for j in range(i + 1, k):
            coef[j - 1, p] = 1.0
            p += 1
    out = [g.name("svm_label"), g.name("svm_proba")]
    g.nodes.append(helper.make_node(
        "SVMClassifier", [dec], out, name=g.name("n_svm_coupling"), domain="ai.onnx.ml",
        kernel_type="LINEAR", kernel_params=[0.0, 0.0, 0.0], support_vectors=np.eye(P, dtype=np.float32).ravel().tolist(),
        vectors_per_class=per_class, coefficients=coef.ravel().tolist(), rho=[0.0] * P,
        prob_a=np.asarray(est._probA, np.float32).tolist(), prob_b=np.asarray(est._probB, np.float32).tolist(),
        classlabels_ints=list(range(k)), post_transform="NONE"))
    return out[1]


def _decision(g, est, x: str) -> str:
    """libsvm's one-vs-one decision values, float64 ``[N, n_pairs]`` (pair (i, j) > 0 votes for class i)."""
    if est.kernel not in ("rbf", "linear", "poly", "sigmoid"):
        raise NotCompilable(f"{type(est).__name__}(kernel={est.kernel!r}) (rbf, linear, poly and sigmoid compile)")
    if getattr(est, "_sparse", False):
        raise NotCompilable(f"{type(est).__name__} fitted on a sparse matrix")
    sv = np.asarray(est.support_vectors_, dtype=np.float64)
    K, cols, width = _kernel(g, est, x, sv)
    C = _pair_coefficients(est)
    W = np.zeros((width, C.shape[1]))
    np.add.at(W, cols, C)  # a support vector repeated in the shared set adds its weights to one column
    return g.op("Add", [g.op("MatMul", [K, g.const(W, "pair_coef")]),
                        g.const(np.asarray(est._intercept_, np.float64), "intercept")], "svm_dec")


def _pair_matrices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n_pairs, k]`` one-hots of each pair's first class i and second class j."""
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    first, second = np.zeros((len(pairs), k)), np.zeros((len(pairs), k))
    for p, (i, j) in enumerate(pairs):
        first[p, i] = second[p, j] = 1.0
    return first, second


def _votes(g, dec: str, k: int) -> str:
    """libsvm's vote counts, float64 ``[N, k]``: pair (i, j) votes i when its value is > 0, else j."""
    first, second = _pair_matrices(k)
    win_i = g.op("Cast", [g.op("Greater", [dec, g.const(np.zeros(1), "z")])], "win_i", to=TensorProto.DOUBLE)
    win_j = g.op("Sub", [g.const(np.ones(1), "one"), win_i], "win_j")
    return g.op("Add", [g.op("MatMul", [win_i, g.const(first, "first")]),
                        g.op("MatMul", [win_j, g.const(second, "second")])], "votes")


def svc_proba(g, est, x: str) -> str:
    """``predict_proba`` of a fitted SVC / NuSVC (float32 ``[N, classes]``); ``x`` is the float64 input."""
    if np.asarray(est._probA).size == 0:
        raise NotCompilable(f"{type(est).__name__} fitted without probability=True has no predict_proba")
    dec = _decision(g, est, x)  # kernel checks inside
    return _coupling(g, g.op("Cast", [dec], "svm_dec_f", to=TensorProto.FLOAT), est)


def svc_output(g, est, x: str, method: str) -> str:
    """``predict`` (one-hot of libsvm's vote winner, first class on ties) or ``decision_function`` (float32).

    ``decision_function`` is scikit-learn's: the negated pair value for two classes (one column), else
    ``decision_function_shape="ovr"`` (votes plus ``s / (3 (|s| + 1))`` of the summed confidences)
    or the raw pair values for ``"ovo"``.
    """
    k = len(est.classes_)
    dec = _decision(g, est, x)
    if method == "predict":
        if getattr(est, "break_ties", False) and est.decision_function_shape == "ovr" and k > 2:
            raise NotCompilable(f"{type(est).__name__}(break_ties=True) predict")
        winner = g.op("ArgMax", [_votes(g, dec, k)], "svm_winner", axis=1, keepdims=0)  # first maximum, as libsvm
        return g.op("Gather", [g.const(np.eye(k, dtype=np.float32), "eye"), winner], "svm_label", axis=0)
    if k == 2:
        return g.op("Cast", [g.op("Neg", [dec])], "svm_df", to=TensorProto.FLOAT)
    if est.decision_function_shape == "ovo":
        return g.op("Cast", [dec], "svm_df", to=TensorProto.FLOAT)
    first, second = _pair_matrices(k)
    sums = g.op("MatMul", [dec, g.const(first - second, "conf_sign")], "conf_sum")  # -(-dec) to i, +(-dec) to j
    scaled = g.op("Div", [sums, g.op("Mul", [g.const(np.float64(3.0), "three"),
                                            g.op("Add", [g.op("Abs", [sums]), g.const(np.ones(1), "one")])])])
    return g.op("Cast", [g.op("Add", [_votes(g, dec, k), scaled])], "svm_df", to=TensorProto.FLOAT)
