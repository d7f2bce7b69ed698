"""Safe save and load: safetensors + JSON for torch, skops for scikit-learn, ONNX; pickle only if trusted.

The base of slimstack: it imports no technique and no model zoo. Packages above it register what
they save (``register_format``) and the module classes they rebuild (``register_architecture``);
``slimstack/__init__`` imports them (see ``slimstack._plugins``), so ``import slimstack.io`` loads them too.
"""

from . import _formats, _module_tree, _torch  # noqa: F401  (the base's own formats: torch, module_tree, sklearn, onnx)
from ._architectures import architecture_of, architectures, build_architecture, register_architecture
from ._embedded import pack_module, packing, unpack_module
from ._formats import OnnxModel
from ._registry import MANIFEST, PICKLE_SUFFIXES, Format, formats, get_format, load, member, register_format, save
from ._skops import load_skops
from ._torch import WEIGHTS, build_from_spec, load_state, load_weights, module_spec, resize_to_state, save_state

__all__ = ["Format", "MANIFEST", "OnnxModel", "PICKLE_SUFFIXES", "WEIGHTS", "architecture_of", "architectures",
           "build_architecture", "build_from_spec", "formats", "get_format", "load", "load_skops", "load_state",
           "load_weights", "member", "module_spec", "pack_module", "packing", "unpack_module", "register_architecture", "register_format", "resize_to_state",
           "save", "save_state"]
