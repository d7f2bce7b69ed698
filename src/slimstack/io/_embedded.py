"""Torch modules held inside scikit-learn objects, saved without pickle.

skops writes an estimator's state as a tree of plain values; a torch module in that state (a
``TorchClassifier`` member of an ensemble, inside a Pipeline or a Cascade) is not one. While the
sklearn format saves, :func:`packing` is true and such members replace each module by the files
``ss.save`` writes for it (safetensors plus JSON, as bytes); loading writes them back to a
temporary folder and rebuilds the module with ``ss.load``, with the trust the outer load was given.
"""

from __future__ import annotations

import contextlib
import contextvars
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ModelFileError

__all__ = ["packing", "pack_module", "unpack_module", "PACKED_KEY"]

PACKED_KEY = "slimstack_saved_module"
_PACKING: contextvars.ContextVar[bool] = contextvars.ContextVar("slimstack_packing", default=False)
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("slimstack_unpack_trusted", default=False)


def packing() -> bool:
    """True while the sklearn format writes a file: modules in an estimator's state are to be packed."""
    return _PACKING.get()


@contextlib.contextmanager
def _flag(var: contextvars.ContextVar, value: bool):
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def saving():
    return _flag(_PACKING, True)


def loading(trusted: bool):
    return _flag(_TRUSTED, trusted)


def pack_module(module: Any) -> dict[str, Any]:
    """``{PACKED_KEY: {relative file name: bytes}}``: what ``ss.save(module)`` writes, in memory."""
    from ._registry import save

    with tempfile.TemporaryDirectory() as tmp:
        root = save(module, Path(tmp) / "m")
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {PACKED_KEY: files}


def unpack_module(value: Any) -> Any:
    """The module :func:`pack_module` packed (``value`` returned unchanged when it is not a packed one)."""
    if not (isinstance(value, dict) and PACKED_KEY in value):
        return value
    from ._registry import load

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "m"
        for name, data in value[PACKED_KEY].items():
            target = (root / name).resolve()
            if root.resolve() not in target.parents:
                raise ModelFileError(f"packed module file {name!r} points outside its folder: the saved ensemble is "
                                     "corrupt or was tampered with; save it again from the fitted estimator")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bytes(data))
        return load(root, trusted=_TRUSTED.get())
