"""Safe save and load: safetensors + JSON for torch, skops for scikit-learn, ONNX; pickle only if trusted."""

from . import _formats, _module_tree, _torch  # noqa: F401  (register the built-in formats)
from ._formats import OnnxModel
from ._registry import MANIFEST, Format, formats, load, register_format, save
from ._torch import build_from_spec, load_state, load_weights, module_spec, resize_to_state, save_state

__all__ = ["Format", "MANIFEST", "OnnxModel", "build_from_spec", "formats", "load", "load_state", "load_weights",
           "module_spec", "register_format", "resize_to_state", "save", "save_state"]
