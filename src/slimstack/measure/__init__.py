"""The measurement core: quality, size and speed of any model, side by side on this CPU."""

from ._adapters import (
    EncoderAdapter,
    ModelAdapter,
    OnnxAdapter,
    SklearnAdapter,
    TorchAdapter,
    adapt,
    register_adapter,
    torch_peak_memory,
)
from ._measure import compare, measure
from ._metrics import PRIMARY_METRIC, classification_metrics, cosine_fidelity, regression_metrics, softmax, sts_metrics
from ._results import Comparison, Measurement, format_bytes
from ._score import TaskComparer, higher_is_better, primary_metric, register_task, score, scores
from ._timing import time_interleaved

__all__ = [
    "Comparison", "EncoderAdapter", "Measurement", "ModelAdapter", "OnnxAdapter", "PRIMARY_METRIC", "SklearnAdapter",
    "TaskComparer", "TorchAdapter", "adapt", "classification_metrics", "compare", "cosine_fidelity", "format_bytes",
    "higher_is_better", "measure", "primary_metric", "register_adapter", "register_task", "regression_metrics",
    "score", "scores", "softmax", "sts_metrics", "time_interleaved", "torch_peak_memory",
]

from .._verbs import make_verb_module as _make_verb_module

_make_verb_module(__name__, measure)  # ss.measure(...) calls the verb; ss.measure.<name> reaches this package
