"""The save/load format registry and the ``ss.save``/``ss.load`` verbs.

A saved model is a directory holding ``slimstack.json`` (which format wrote it, and the JSON spec
that rebuilds it) plus the format's files. Each format is a class with static ``can_save``,
``save`` and ``load``; the first registered format (by priority) that can save an object wins.
Loading never unpickles unless ``trusted=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from .._utils import atomic_dir
from ..errors import ModelError, ModelFileError, UnsafeFileError, unknown_name

__all__ = ["Format", "register_format", "formats", "save", "load", "MANIFEST", "PICKLE_SUFFIXES"]

MANIFEST = "slimstack.json"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt")


class Format(Protocol):
    priority: int

    @staticmethod
    def can_save(obj: Any) -> bool: ...

    @staticmethod
    def save(obj: Any, directory: Path) -> dict[str, Any]: ...

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> Any: ...


_FORMATS: dict[str, type] = {}


def register_format(name: str):
    """Class decorator adding a save/load format under ``name``."""

    def deco(cls):
        cls.name = name
        cls.priority = getattr(cls, "priority", 0)
        _FORMATS[name] = cls
        return cls

    return deco


def formats() -> list[str]:
    return sorted(_FORMATS)


def _ordered():
    return sorted(_FORMATS.values(), key=lambda c: -c.priority)


def save(model: Any, path: str | Path) -> Path:
    """Save ``model`` to the directory ``path`` in a safe format (no pickle), atomically.

    PyTorch modules go to safetensors plus a JSON description that rebuilds them; Hugging Face
    encoders to ``save_pretrained`` safetensors; scikit-learn models to skops; ONNX models to
    ``.onnx``. The directory is written under a temporary name and renamed when complete, so an
    interrupted save never leaves a half-written model.

    Examples
    --------
    >>> ss.save(model, "out/cnn")      # doctest: +SKIP
    >>> model = ss.load("out/cnn")     # doctest: +SKIP
    """
    for fmt in _ordered():
        if fmt.can_save(model):
            with atomic_dir(path) as tmp:
                spec = fmt.save(model, tmp)
                manifest = {"format": fmt.name, "format_version": FORMAT_VERSION, "slimstack_version": _version(),
                            "spec": spec}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            return Path(path)
    raise ModelError(
        f"ss.save cannot save a {type(model).__module__}.{type(model).__name__}; supported: "
        f"{', '.join(formats())} (a torch module must be a registered architecture, nn.Sequential of "
        "standard layers, or a Hugging Face model: see ss.zoo.register_architecture)"
    )


def load(path: str | Path, *, trusted: bool = False) -> Any:
    """Load a model saved by :func:`save`, an ``.onnx`` file or a ``.skops`` file.

    Pickle-based files (``.pkl``, ``.joblib``, ``.pt``, ...) can execute arbitrary code when
    loaded, so they are refused unless ``trusted=True``.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model path {str(path)!r} does not exist; pass a directory written by ss.save, "
                             "an .onnx file or a .skops file")
    if path.is_dir():
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            if (path / "config.json").exists():  # a Hugging Face model directory: the format that claims it
                fmt = next((f for f in _ordered() if getattr(f, "claims_hf_dir", None) and f.claims_hf_dir(path)),
                           _FORMATS["sentence_encoder"])
                return fmt.load(path, {"hf_dir": True}, trusted)
            raise ModelFileError(f"{str(path)!r} holds no {MANIFEST}; it was not written by ss.save")
        try:
            manifest = json.loads(manifest_path.read_text())
            name, spec = manifest["format"], manifest["spec"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{str(manifest_path)!r} is corrupt ({exc}); save the model again") from exc
        if name not in _FORMATS:
            raise unknown_name("model format", name, _FORMATS, fix="Is this slimstack older than the one that saved it?")
        return _FORMATS[name].load(path, spec, trusted)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not trusted:
            raise UnsafeFileError(
                f"{path.name} is a pickle-based file, and unpickling can run arbitrary code; "
                "pass trusted=True only if you trust its source, or save it with ss.save (safetensors/skops/ONNX)"
            )
        return _load_pickle(path)
    for fmt in _ordered():
        loader = getattr(fmt, "load_file", None)
        if loader is not None and suffix in getattr(fmt, "suffixes", ()):
            return loader(path, trusted)
    raise ModelFileError(f"cannot load {path.name!r}: pass a directory written by ss.save, an .onnx or a .skops file")


def _load_pickle(path: Path) -> Any:
    if path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt"):
        import torch

        return torch.load(path, map_location="cpu", weights_only=False)
    import joblib

    return joblib.load(path)


def _version() -> str:
    from .. import __version__

    return __version__
