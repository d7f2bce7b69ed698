"""The save/load format registry and the ``ss.save``/``ss.load`` verbs.

A saved model is a directory holding ``slimstack.json`` (which format wrote it, and the JSON spec
that rebuilds it) plus the format's files. Each format is a class with static ``can_save``,
``save`` and ``load``; the first registered format (by priority) that can save an object wins.
Loading never unpickles unless ``trusted=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

from ..errors import ModelError, ModelFileError, UnsafeFileError, unknown_name
from ._replace import check_target, recover, replace_dir, written_files

__all__ = ["Format", "register_format", "formats", "get_format", "save", "load", "member", "MANIFEST", "PICKLE_SUFFIXES", "PATH_KEYS"]

MANIFEST = "slimstack.json"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt")
# Spec keys whose values name files or folders of the saved model; each must stay inside its folder.
PATH_KEYS = frozenset({"file", "encoder", "tokenizer", "weights", "path", "dir", "folder"})


class Format(Protocol):
    """A save/load format. ``save`` returns the JSON spec; it names its files under :data:`PATH_KEYS`
    keys (relative to the folder), which :func:`load` checks stay inside the folder.

    ``can_save(obj)`` says whether the format writes ``obj``; a format that writes objects of given
    types exactly declares ``saves = (TheType, ...)`` instead and :func:`register_format` derives it
    (``saves = ()``: a format that only loads). ``load_file(path, trusted)`` and ``suffixes`` let
    ``ss.load`` read a bare file.
    """

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
        if "can_save" not in vars(cls):
            if not hasattr(cls, "saves"):
                raise TypeError(f"format {name!r} needs can_save(obj) or saves = (types it writes,)")
            saves = tuple(cls.saves)
            cls.can_save = staticmethod(lambda obj: type(obj) in saves)
        _FORMATS[name] = cls
        return cls

    return deco


def formats() -> list[str]:
    """Names of every registered format (the base's own and those the zoo, llm, prune, ... register)."""
    return sorted(_FORMATS)


def get_format(name: str) -> type:
    """The format class registered under ``name`` (e.g. ``"sentence_encoder"``)."""
    if name not in _FORMATS:
        raise unknown_name("model format", name, _FORMATS,
                           fix="Is the package that registers it (slimstack.zoo, slimstack.llm, ...) imported?")
    return _FORMATS[name]


def _ordered():
    return sorted(_FORMATS.values(), key=lambda c: -c.priority)


def save(model: Any, path: str | Path) -> Path:
    """Save ``model`` to the directory ``path`` in a safe format (no pickle), atomically.

    PyTorch modules go to safetensors plus a JSON description that rebuilds them; Hugging Face
    encoders to ``save_pretrained`` safetensors; scikit-learn models to skops; ONNX models to
    ``.onnx``. The directory is written under a temporary name and swapped in when complete, so an
    interrupted save never leaves a half-written model, and ``path`` always holds the old model or the
    new one. An existing ``path`` is replaced only if ss.save wrote it (its ``slimstack.json`` lists
    every file in it) or it is an empty folder: a file, a folder of yours, or a saved folder you added
    files to is refused with :class:`~slimstack.ModelFileError`. Folders are created ``0700``.

    Examples
    --------
    >>> ss.save(model, "out/cnn")      # doctest: +SKIP
    >>> model = ss.load("out/cnn")     # doctest: +SKIP
    """
    target = Path(os.path.abspath(path))
    for fmt in _ordered():
        if fmt.can_save(model):
            check_target(target, MANIFEST)
            with replace_dir(target) as tmp:
                spec = fmt.save(model, tmp)
                manifest = {"format": fmt.name, "format_version": FORMAT_VERSION, "slimstack_version": _version(),
                            "spec": spec, "files": written_files(tmp)}
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
        with contextlib.suppress(OSError):
            recover(Path(os.path.abspath(path)))  # a save killed between its two fallback renames
    if not path.exists():
        raise ModelFileError(f"model path {str(path)!r} does not exist; pass a directory written by ss.save, "
                             "an .onnx file or a .skops file")
    if path.is_dir():
        root = path.resolve()
        _check_links(root)
        if not (root / MANIFEST).is_file():
            if (root / "config.json").is_file():  # a Hugging Face model directory: the format that claims it
                fmt = next((f for f in _ordered() if getattr(f, "claims_hf_dir", None) and f.claims_hf_dir(root)),
                           None) or get_format("sentence_encoder")
                return fmt.load(root, {"hf_dir": True}, trusted)
            raise ModelFileError(f"{str(path)!r} holds no {MANIFEST}; it was not written by ss.save")
        name, spec = _read_manifest(root / MANIFEST)
        _check_spec_paths(root, spec)
        return _FORMATS[name].load(root, spec, trusted)
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


def _read_manifest(file: Path) -> tuple[str, dict[str, Any]]:
    """The format name and spec of a manifest; any damage is one ModelFileError naming the file."""
    fix = "save the model again with ss.save"
    try:
        manifest = json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, OSError) as exc:
        raise ModelFileError(f"{str(file)!r} is corrupt: not a JSON manifest ({type(exc).__name__}: {str(exc)[:120]}); "
                             f"{fix}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), str) \
            or not isinstance(manifest.get("spec"), dict):
        raise ModelFileError(f"{str(file)!r} is corrupt: it needs a 'format' name and a 'spec' object; {fix}")
    name = manifest["format"]
    if name not in _FORMATS:
        raise unknown_name("model format", name, _FORMATS, fix="Is this slimstack older than the one that saved it?")
    return name, manifest["spec"]


def member(directory: Path, name: Any, what: str = "file") -> Path:
    """``directory / name``, refusing absolute names, ``..`` and symlinks that leave ``directory``."""
    root = Path(directory).resolve()
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ModelFileError(f"the saved model in {str(root)!r} names its {what} {name!r}, which is not a "
                             "relative path inside the folder; slimstack loads only files inside a saved "
                             "model's folder. Save the model again with ss.save")
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise ModelFileError(f"{what} {name!r} in {str(root)!r} leads to {str(target)!r}, outside the folder "
                             "(a symlink); slimstack loads only files inside a saved model's folder. "
                             "Copy the file into the folder instead of linking it")
    return target


def _check_spec_paths(root: Path, spec: Any, key: str = "") -> None:
    if isinstance(spec, dict):
        for k, v in spec.items():
            _check_spec_paths(root, v, str(k))
    elif isinstance(spec, list):
        for v in spec:
            _check_spec_paths(root, v, key)
    elif key in PATH_KEYS and isinstance(spec, str):
        member(root, spec, what=key)


def _check_links(root: Path) -> None:
    """Refuse a folder holding a symlink that leads outside it (loaders read files they are not named)."""
    for parent, dirs, files in os.walk(root):
        for entry in dirs + files:
            p = Path(parent) / entry
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                raise ModelFileError(f"{str(p)!r} is a symlink to {str(p.resolve())!r}, outside the model folder "
                                     f"{str(root)!r}; slimstack loads only files inside a saved model's folder. "
                                     "Copy the file into the folder instead of linking it")


def _load_pickle(path: Path) -> Any:
    if path.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt"):
        import torch

        return torch.load(path, map_location="cpu", weights_only=False)
    import joblib

    return joblib.load(path)


def _version() -> str:
    from .. import __version__

    return __version__
