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
from ._score import higher_is_better, primary_metric, score, scores

__all__ = [
    "Comparison", "EncoderAdapter", "Measurement", "ModelAdapter", "OnnxAdapter", "PRIMARY_METRIC", "SklearnAdapter",
    "TorchAdapter", "adapt", "higher_is_better", "primary_metric", "score", "scores", "classification_metrics", "compare", "cosine_fidelity", "format_bytes", "measure",
    "register_adapter", "regression_metrics", "softmax", "sts_metrics", "torch_peak_memory",
]

from .._verbs import make_verb_module as _make_verb_module

_make_verb_module(__name__, measure)  # ss.measure(...) calls the verb; ss.measure.<name> reaches this package
