"""``ss.save`` / ``ss.load`` of llama.cpp models: a GGUF file slimstack wrote loads back as :class:`LlamaCppLM`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ....io import register_format
from ._lm import SLIMSTACK_KEY, LlamaCppLM

__all__ = ["LlamaCppFormat", "slimstack_record"]


def slimstack_record(path: Path) -> dict | None:
    """The record slimstack stored in a GGUF file it wrote, or None for any other GGUF file."""
    try:
        import gguf

        field = gguf.GGUFReader(str(path)).fields.get(SLIMSTACK_KEY)
    except Exception:  # not a readable GGUF: the other .gguf loader reports it
        return None
    if field is None:
        return None
    try:
        return json.loads(field.contents())
    except (TypeError, ValueError):
        return {}


@register_format("llamacpp")
class LlamaCppFormat:
    """``model.gguf`` (slimstack's own codes) plus the manifest; a bare .gguf slimstack wrote loads too."""

    priority = 25
    suffixes = (".gguf",)
    saves = (LlamaCppLM,)

    @staticmethod
    def save(obj: LlamaCppLM, directory: Path) -> dict[str, Any]:
        obj.save(directory / "model.gguf")
        return {"file": "model.gguf", "n_threads": obj.n_threads, "n_ctx": obj.n_ctx}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> LlamaCppLM:
        path = directory / spec.get("file", "model.gguf")
        return LlamaCppLM(path, n_threads=int(spec.get("n_threads", 2)), n_ctx=int(spec.get("n_ctx", 2048)),
                          record=slimstack_record(path))

    @staticmethod
    def load_file(path: Path, trusted: bool) -> Any:
        record = slimstack_record(path)
        if record is not None:
            return LlamaCppLM(path, record=record)
        from ....llm import GGUFFormat  # any other GGUF: what transformers reads, as a float CausalLM

        return GGUFFormat.load_file(path, trusted)
