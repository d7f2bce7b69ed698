"""The PyTorch backend: integer modules, the layer swapper, and their save format."""

from . import _format  # noqa: F401  (registers the save format and measure adapter)
from ._kernels import int8_kernel
from ._modules import MixedEmbedding, QuantConv2d, QuantLinear, WeightOnlyEmbedding, WeightOnlyLinear
from ._transformer import QuantBertLayer

__all__ = ["MixedEmbedding", "QuantBertLayer", "QuantConv2d", "QuantLinear", "WeightOnlyEmbedding", "WeightOnlyLinear", "int8_kernel"]
