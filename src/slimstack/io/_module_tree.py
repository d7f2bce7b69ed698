"""Any user ``nn.Module`` subclass, pruned or not, as safetensors weights plus a JSON module tree.

The "torch" format rebuilds registered architectures and ``nn.Sequential`` trees by calling their
constructors. A user's own class (a residual CNN in their script) has a constructor slimstack
cannot call with the right arguments, and after structured pruning its layers no longer match
what the constructor would build anyway. So this format saves the module *tree* instead of the
constructor call: for every submodule its class's import path, its plain attributes
(``in_channels``, ``kernel_size``, ``eps``, ... as JSON), its training flag and the names of its
parameters and buffers, whose tensors go to ``model.safetensors``. Loading creates each module
with ``cls.__new__`` + ``nn.Module.__init__`` (the class's own ``__init__`` is not run: the saved
attributes and tensors are the module's state), so a pruned model comes back at its pruned shapes.

No pickle, no ``exec``: the JSON holds only numbers, strings, lists and dicts, and the
safetensors file only tensors. What remains is which classes may be looked up by name:

- classes from ``torch`` and ``slimstack`` (importing them runs only code already installed with
  slimstack), and classes whose module is already imported in this process (the caller has run
  that code already) are used directly;
- any other module is imported only with ``ss.load(path, trusted=True)``, because importing a
  module runs its top-level code; without it the error names the class and the two fixes;
- a class defined in the saving script (``__main__.ResCNN``) is found when the loading script
  defines a class of the same name.

Every looked-up class must be an ``nn.Module`` subclass. A module whose attributes are not plain
data (a lambda, an open file, a tensor outside its parameters and buffers) cannot be described
in JSON; saving it raises an error that names the attribute. Hooks are not saved (they are code).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, ModelFileError, UnsafeFileError
from ._registry import register_format

__all__ = ["ModuleTreeFormat", "class_path", "tree_spec", "build_tree"]

WEIGHTS = "model.safetensors"
TREE_VERSION = 1
_TRUSTED_ROOTS = ("torch", "slimstack")
_MODULE_KEYS = frozenset(nn.Module().__dict__)  # nn.Module's own bookkeeping, rebuilt by nn.Module.__init__


def class_path(cls: type) -> str:
    """``module:QualName``, the colon marking where the module path ends (nested classes have dots too)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _importable(cls: type) -> bool:
    return "<locals>" not in cls.__qualname__ and getattr(sys.modules.get(cls.__module__), "__name__", None) is not None


# -- plain attributes as JSON ---------------------------------------------------------------------
def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, torch.Size):
        return {"__tuple__": list(value)}
    raise ModelError(
        f"ss.save cannot describe {where} = {type(value).__module__}.{type(value).__name__} in JSON (no pickle is "
        "used); keep only numbers, strings, lists, tuples and dicts as module attributes (tensors as registered "
        "parameters or buffers), or register the architecture with @ss.zoo.register_architecture")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(_decode(v) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode(v) for k, v in value["__dict__"].items()}
        if "__dtype__" in value:
            dtype = getattr(torch, str(value["__dtype__"]), None)
            if not isinstance(dtype, torch.dtype):
                raise ModelFileError(f"unknown dtype {value['__dtype__']!r} in the saved module tree")
            return dtype
        if "__device__" in value:
            return torch.device(value["__device__"])
        raise ModelFileError(f"unknown value {sorted(value)} in the saved module tree; it is corrupt")
    return value


# -- save -----------------------------------------------------------------------------------------
def tree_spec(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON tree of ``model`` and the tensors it refers to (shared tensors and modules saved once)."""
    tensors: dict[str, torch.Tensor] = {}
    key_of: dict[int, str] = {}
    seen: dict[int, str] = {}

    def tensor_key(t: torch.Tensor | None, name: str) -> str | None:
        if t is None:
            return None
        if id(t) not in key_of:
            key_of[id(t)] = name
            tensors[name] = t.detach().contiguous().clone()
        return key_of[id(t)]

    def node(m: nn.Module, path: str) -> dict[str, Any]:
        if id(m) in seen:
            return {"same_as": seen[id(m)]}
        seen[id(m)] = path
        cls = type(m)
        if not _importable(cls):
            raise ModelError(
                f"ss.save cannot describe module {path or '<root>'!r}: its class {class_path(cls)} is defined inside "
                "a function, so no later program can find it; define the class at module level (or decorate it with "
                "@ss.zoo.register_architecture and give it get_config())")
        pre = f"{path}." if path else ""
        attrs = {k: _encode(v, f"{path or type(model).__name__}.{k}") for k, v in vars(m).items()
                 if k not in _MODULE_KEYS}
        return {"class": class_path(cls), "training": m.training, "attrs": attrs,
                "params": {k: tensor_key(p, pre + k) for k, p in m._parameters.items()},
                "requires_grad": [k for k, p in m._parameters.items() if p is not None and p.requires_grad],
                "buffers": {k: tensor_key(b, pre + k) for k, b in m._buffers.items()},
                "non_persistent": sorted(m._non_persistent_buffers_set),
                "children": {k: None if c is None else node(c, pre + k) for k, c in m._modules.items()}}

    return {"version": TREE_VERSION, "root": node(model, "")}, tensors


# -- load -----------------------------------------------------------------------------------------
def _find_class(path: str, trusted: bool) -> type:
    module_name, sep, qual = path.partition(":")
    if not sep or not module_name or not qual:
        raise ModelFileError(f"class {path!r} in the saved module tree is not 'module:Class'; the file is corrupt")
    path = f"{module_name}.{qual}"
    module = sys.modules.get(module_name)
    if module is None:
        root = module_name.split(".")[0]
        if not (trusted or root in _TRUSTED_ROOTS):
            raise UnsafeFileError(
                f"the saved model needs class {path}, and its module {module_name!r} is not imported; "
                f"`import {module_name}` before ss.load (importing runs that module's code, so ss.load does not do "
                "it on its own), or pass ss.load(path, trusted=True) to let it import the module")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelFileError(
                f"class {path} is not importable ({type(exc).__name__}: {exc}); put the package that defines it "
                "on PYTHONPATH (or pip install it) and load again") from exc
    obj: Any = module
    for part in qual.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            where = ("the script that saved the model; define or import a class of that name in the script that "
                     "loads it (or move it into an importable module and save again)") if module_name == "__main__" \
                else f"module {module_name!r}, which does not define it (renamed or moved since saving?)"
            raise ModelFileError(f"the saved model needs class {path}, defined in {where}")
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ModelFileError(f"{path} is a {type(obj).__name__}, not an nn.Module class; the saved tree is corrupt "
                             "or the name now means something else")
    return obj


def build_tree(tree: dict[str, Any], tensors: dict[str, torch.Tensor], *, trusted: bool) -> nn.Module:
    """The module described by ``tree``, with its tensors from ``tensors`` (no class ``__init__`` is run)."""
    if tree.get("version") != TREE_VERSION:
        raise ModelFileError(f"module tree version {tree.get('version')!r} is not {TREE_VERSION}; "
                             "this slimstack cannot read it")
    built: dict[str, nn.Module] = {}
    params: dict[str, nn.Parameter] = {}

    def tensor(key: str | None) -> torch.Tensor | None:
        if key is None:
            return None
        if key not in tensors:
            raise ModelFileError(f"tensor {key!r} named by the module tree is missing from {WEIGHTS}; save again")
        return tensors[key]

    def make(n: dict[str, Any], path: str) -> nn.Module:
        if "same_as" in n:
            return built[n["same_as"]]
        cls = _find_class(n["class"], trusted)
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.__dict__.update({k: _decode(v) for k, v in n["attrs"].items()})
        m.training = bool(n["training"])
        built[path] = m
        grad = set(n.get("requires_grad", ()))
        for k, key in n["params"].items():
            t = tensor(key)
            if t is not None and key not in params:
                params[key] = nn.Parameter(t, requires_grad=k in grad)
            m._parameters[k] = None if t is None else params[key]
        for k, key in n["buffers"].items():
            m._buffers[k] = tensor(key)
        m._non_persistent_buffers_set = set(n.get("non_persistent", ()))
        pre = f"{path}." if path else ""
        for k, c in n["children"].items():
            m._modules[k] = None if c is None else make(c, pre + k)
        return m

    return make(tree["root"], "")


@register_format("module_tree")
class ModuleTreeFormat:
    """Any ``nn.Module`` whose classes are defined at module level: the last resort for torch modules."""

    priority = -10

    @staticmethod
    def can_save(obj: Any) -> bool:
        return isinstance(obj, nn.Module)

    @staticmethod
    def save(obj: nn.Module, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        tree, tensors = tree_spec(obj)
        save_file(tensors, str(directory / WEIGHTS))
        return {"tree": tree, "class": class_path(type(obj)), "tensors": len(tensors)}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> nn.Module:
        from ._torch import load_state

        try:
            tree = spec["tree"]
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"{str(directory)!r}: the module tree is missing from the manifest; save again") from exc
        return build_tree(tree, load_state(directory / WEIGHTS), trusted=trusted)
