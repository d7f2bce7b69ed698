"""Saving and loading causal LMs: transformers folders, ``.gguf`` files, and ``ss.save`` output.

A saved :class:`CausalLM` is an ``ss.save`` directory whose ``model/`` sub-folder is a plain
transformers folder (``config.json``, ``model.safetensors`` with tied embeddings stored once,
tokenizer files), so other tools can read it too. No pickle is ever read unless ``trusted=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelError, ModelFileError, UnsafeFileError
from ..io import register_format
from ._causal_lm import CausalLM

__all__ = ["CausalLMFormat", "GGUFFormat", "hf_class_names", "load_hf_causal_lm", "is_causal_lm_config", "read_hf_config"]

_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def read_hf_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{str(Path(folder) / 'config.json')!r} is unreadable ({exc}); "
                             "pass a folder written by save_pretrained") from exc


def hf_class_names(mapping: str) -> set[str]:
    """Every class name in one of transformers' auto mappings (e.g. ``"MODEL_MAPPING_NAMES"``)."""
    from transformers.models.auto import modeling_auto

    names: set[str] = set()
    for value in getattr(modeling_auto, mapping).values():
        names.update([value] if isinstance(value, str) else value)
    return names


def _causal_lm_classes() -> set[str]:
    return hf_class_names("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES")


def is_causal_lm_config(config: dict[str, Any]) -> bool:
    """True when the folder's config names a causal-LM class (``LlamaForCausalLM``, ``GPT2LMHeadModel``)."""
    archs = config.get("architectures") or []
    known = _causal_lm_classes()
    return any(a in known or a.endswith("ForCausalLM") for a in archs)


def load_hf_causal_lm(folder: str | Path, *, trusted: bool = False, name: str | None = None) -> CausalLM:
    """Load a local transformers causal-LM folder (``save_pretrained`` output) as a :class:`CausalLM`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ._zoo import _quiet_transformers

    folder = Path(folder)
    config = read_hf_config(folder)
    if not is_causal_lm_config(config):
        archs = config.get("architectures") or [f"model_type {config.get('model_type')!r} with no architectures"]
        raise ModelError(
            f"{str(folder)!r} is not a causal language model: its config names {', '.join(archs)}. "
            "A causal LM folder names a *ForCausalLM or *LMHeadModel class; load other models with ss.load(path)"
        )
    safe = any((folder / f).exists() for f in _SAFE_WEIGHTS)
    if not safe:
        if not any((folder / f).exists() for f in _PICKLE_WEIGHTS):
            raise ModelFileError(f"{str(folder)!r} holds no weights (model.safetensors); save the model again")
        if not trusted:
            raise UnsafeFileError(
                f"{str(folder)!r} holds its weights only as pytorch_model.bin (pickle, which can run code); "
                "pass trusted=True only if you trust its source, or re-save it with safetensors"
            )
    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, use_safetensors=safe,
                                                     dtype="auto")
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"cannot load the causal LM in {str(folder)!r}: {str(exc)[:300]}") from exc
    return CausalLM(model, tokenizer, name=name or config.get("_name_or_path") or folder.name)


@register_format("causal_lm")
class CausalLMFormat:
    """``ss.save`` of a :class:`CausalLM`: ``model/`` is a transformers folder (safetensors + tokenizer)."""

    priority = 20
    saves = (CausalLM,)

    @staticmethod
    def save(obj: CausalLM, directory: Path) -> dict[str, Any]:
        from ._zoo import _quiet_transformers

        _quiet_transformers()
        target = directory / "model"
        obj.model.save_pretrained(str(target))
        obj.tokenizer.save_pretrained(str(target))
        stray = sorted(p.name for p in target.glob("*.bin"))
        if stray:
            raise ModelError(f"saving {obj.name} wrote pickle files {stray}; this transformers version does not "
                             "save safetensors by default")
        return {"model": "model", "name": obj.name, "architecture": type(obj.model).__name__}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> CausalLM:
        return load_hf_causal_lm(directory / spec.get("model", "model"), name=spec.get("name"))


@register_format("gguf")
class GGUFFormat:
    """``ss.load("model.gguf")``: what transformers can read from GGUF, as a float32 :class:`CausalLM`."""

    priority = -5
    suffixes = (".gguf",)
    saves = ()  # loads only

    @staticmethod
    def save(obj: Any, directory: Path) -> dict[str, Any]:  # pragma: no cover - it saves nothing
        raise ModelError("ss.save does not write GGUF; use the llama.cpp backend's export")

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> CausalLM:  # pragma: no cover
        raise ModelError("a GGUF model is a single file; pass its path to ss.load")

    @staticmethod
    def load_file(path: Path, trusted: bool) -> CausalLM:
        from ._zoo import load_gguf

        model, tokenizer = load_gguf(path)
        return CausalLM(model, tokenizer, name=path.stem)
