"""Task quality metrics, as pure functions of model outputs and targets."""

from __future__ import annotations

import numpy as np

from ..errors import DataError

__all__ = ["softmax", "classification_metrics", "regression_metrics", "sts_metrics", "cosine_fidelity",
           "PRIMARY_METRIC", "LOWER_IS_BETTER"]

# The metric each task reports as ``quality``.
PRIMARY_METRIC = {"classification": "accuracy", "regression": "r2", "sts": "spearman", "text": "cosine_fidelity",
                  "lm": "perplexity"}
# Metrics where a lower value is better (``Measurement.higher_is_better`` is False for these as quality).
LOWER_IS_BETTER = {"perplexity", "nll", "kld", "kld_p99", "log_loss", "mae"}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(out: np.ndarray, y: np.ndarray, kind: str, n_classes: int | None = None) -> dict[str, float]:
    """Accuracy, macro-F1 and (when probabilities are available) log loss.

    ``kind`` says what ``out`` holds: "logits", "proba" or "label".
    """
    from sklearn.metrics import f1_score, log_loss

    if kind == "label":
        pred, proba = np.asarray(out).ravel(), None
    else:
        proba = softmax(np.asarray(out, dtype=np.float64)) if kind == "logits" else np.asarray(out, dtype=np.float64)
        proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)  # float32 rounding
        pred = proba.argmax(axis=1)
    y = np.asarray(y)
    metrics = {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
    }
    if proba is not None:
        labels = np.arange(proba.shape[1])
        metrics["log_loss"] = float(log_loss(y, np.clip(proba, 1e-15, 1), labels=labels))
    return metrics


def regression_metrics(out: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, r2_score

    pred = np.asarray(out, dtype=np.float64).reshape(len(y), -1)[:, 0]
    return {"r2": float(r2_score(y, pred)), "mae": float(mean_absolute_error(y, pred))}


def sts_metrics(emb: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Spearman (and Pearson) correlation of pair cosine similarity with gold scores.

    ``emb`` holds the embeddings of both sentences of each pair in order (s1, s2, s1, s2, ...).
    """
    from scipy.stats import pearsonr, spearmanr

    a, b = _unit(emb[0::2]), _unit(emb[1::2])
    if len(a) != len(scores):
        raise DataError(f"got {len(emb)} embeddings for {len(scores)} pairs; expected {2 * len(scores)}")
    cos = (a * b).sum(axis=1)
    return {"spearman": float(spearmanr(cos, scores).statistic), "pearson": float(pearsonr(cos, scores).statistic)}


def cosine_fidelity(out: np.ndarray, reference: np.ndarray) -> float:
    """Mean cosine similarity between each output row and the reference model's row."""
    a = _unit(np.asarray(out, dtype=np.float64).reshape(len(out), -1))
    b = _unit(np.asarray(reference, dtype=np.float64).reshape(len(reference), -1))
    return float((a * b).sum(axis=1).mean())


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
