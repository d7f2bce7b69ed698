"""Quantization for CPU inference: dynamic and static int8, weight-only int8/int4, QAT, accuracy-aware fallback.

``ss.quantize(model, config, ...)`` returns a :class:`QuantResult` (``model``, per-layer ``records``,
``summary``, and the full ``record``); the model keeps the original's interface whichever backend
(PyTorch, ONNX Runtime or llama.cpp) was measured fastest. A new technique is one config plus one
handler registered in :data:`REGISTRY` (see docs/adding-a-technique.md).
"""

from .._config import Handler, Request, register_config
from ._api import ModuleHandler, quantize
from ._configs import QAT, DynamicInt8, QuantConfig, StaticInt8, WeightOnly
from ._record import QuantRecord, QuantResult
from ._registry import REGISTRY, register_backend
from ._scheme import Scheme
from .backends.llamacpp import LlamaCppLM
from .backends.llamacpp import _io as _llamacpp_io  # noqa: F401  (registers the .gguf save/load format)
from .backends.onnxruntime import OrtClassifier, OrtSentenceEncoder
from .backends.torch import MixedEmbedding, QuantBertLayer, QuantConv2d, QuantLinear, WeightOnlyEmbedding, WeightOnlyLinear

__all__ = [
    "REGISTRY", "Handler", "ModuleHandler", "Request", "Scheme", "register_backend", "register_config",
    "DynamicInt8", "LlamaCppLM", "MixedEmbedding", "OrtClassifier", "OrtSentenceEncoder", "QAT", "QuantBertLayer", "QuantConfig", "QuantConv2d", "QuantLinear",
    "QuantRecord", "QuantResult", "StaticInt8", "WeightOnly", "WeightOnlyEmbedding", "WeightOnlyLinear", "quantize",
]

from .._verbs import make_verb_module as _make_verb_module

_make_verb_module(__name__, quantize)  # ss.quantize(...) calls the verb; ss.quantize.<name> reaches this package
