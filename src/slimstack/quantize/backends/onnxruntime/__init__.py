"""The ONNX Runtime backend: export from a copy, quantize with onnxruntime.quantization, run in a session."""

from . import _format  # noqa: F401  (registers the save format and measure adapters)
from ._models import OrtClassifier, OrtSentenceEncoder

__all__ = ["OrtClassifier", "OrtSentenceEncoder"]
