"""``ss.save`` of a sparse causal LM: transformers config and tokenizer, weights as values plus bitmask.

The ``model/`` folder holds ``config.json`` and the tokenizer, as a transformers folder does;
``sparse.safetensors`` holds the pruned tensors as ``<name>::values`` and ``<name>::mask`` (see
``_sparse_io``) and every other tensor dense. Tied tensors (LM head = embedding) are stored once and
tied again on load. Nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ModelFileError
from ..io import load_state, register_format
from ._sparse_io import _decode, _encode, mark_sparse, sparsity_marker

__all__ = ["SparseCausalLMFormat"]

FILE = "sparse.safetensors"


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop tensors that share storage with an earlier one; returns the rest and {dropped: kept}."""
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    out, tied = {}, {}
    for key, value in state.items():
        ident = (value.untyped_storage().data_ptr(), tuple(value.shape))
        if ident in seen:
            tied[key] = seen[ident]
            continue
        seen[ident] = key
        out[key] = value
    return out, tied


@register_format("sparse_causal_lm")
class SparseCausalLMFormat:
    """A :class:`CausalLM` marked sparse by ``WandaPruning``/``MagnitudePruning``/``NMPruning``."""

    priority = 35

    @staticmethod
    def can_save(obj: Any) -> bool:
        from ..llm import CausalLM

        return type(obj) is CausalLM and sparsity_marker(obj) is not None and obj.tokenizer is not None

    @staticmethod
    def save(obj: Any, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        from ..llm import quiet_transformers as _quiet_transformers

        _quiet_transformers()
        marker = sparsity_marker(obj)
        inner_names = [t[len("model."):] for t in marker["tensors"]]
        state, tied = _dedupe(obj.model.state_dict())
        stored, shapes = _encode(state, inner_names)
        target = directory / "model"
        target.mkdir(parents=True, exist_ok=True)
        obj.model.config.save_pretrained(str(target))
        if getattr(obj.model, "generation_config", None) is not None:
            obj.model.generation_config.save_pretrained(str(target))
        obj.tokenizer.save_pretrained(str(target))
        save_file(stored, str(directory / FILE))
        return {"model": "model", "file": FILE, "sparse": shapes, "tied": tied, "marker": marker, "name": obj.name}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> Any:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from ..llm import CausalLM
        from ..llm import quiet_transformers as _quiet_transformers

        _quiet_transformers()
        folder = directory / spec.get("model", "model")
        state = _decode(load_state(directory / spec.get("file", FILE)), spec["sparse"])
        try:
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(f"cannot read the config/tokenizer in {str(folder)!r}: {str(exc)[:300]}") from exc
        dtype = next(iter(state.values())).dtype if state else torch.float32
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        result = model.load_state_dict(state, strict=False)
        missing = set(result.missing_keys) - set(spec.get("tied", {}))
        if missing or result.unexpected_keys:
            raise ModelFileError(f"weights in {str(directory)!r} do not fit the saved config: missing "
                                 f"{sorted(missing)[:5]}, unexpected {sorted(result.unexpected_keys)[:5]}; "
                                 "save the model again")
        model.tie_weights()
        for key, source in spec.get("tied", {}).items():  # ties the config does not restore by itself
            if key in result.missing_keys:
                owner, _, attr = key.rpartition(".")
                src_owner, _, src_attr = source.rpartition(".")
                setattr(model.get_submodule(owner), attr, getattr(model.get_submodule(src_owner), src_attr))
        lm = CausalLM(model.eval(), tokenizer, name=spec.get("name"))
        marker = spec.get("marker") or {}
        mark_sparse(lm, marker.get("method", "unknown"), ["model." + k for k in spec["sparse"]],
                    **{k: v for k, v in marker.items() if k not in ("method", "tensors")})
        return lm
