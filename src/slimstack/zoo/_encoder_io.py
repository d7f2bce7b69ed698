"""``ss.save``/``ss.load`` of sentence encoders: Hugging Face safetensors plus the pooling settings.

The zoo registers this format with the io registry (:func:`slimstack.io.register_format`); io itself
knows nothing of encoders. A bare Hugging Face folder (``config.json`` and weights, no
``slimstack.json``) also loads through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelFileError, UnsafeFileError
from ..io import PICKLE_SUFFIXES, member, register_format
from ._encoder import SentenceEncoder, load_hf_encoder

__all__ = ["SentenceEncoderFormat"]


@register_format("sentence_encoder")
class SentenceEncoderFormat:
    priority = 10
    saves = (SentenceEncoder,)

    @staticmethod
    def save(obj: Any, directory: Path) -> dict[str, Any]:
        obj.model.save_pretrained(str(directory / "encoder"), safe_serialization=True)
        obj.tokenizer.save_pretrained(str(directory / "encoder"))
        return {"encoder": "encoder", **obj.get_config()}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> Any:
        if spec.get("hf_dir"):
            return _load_hf_dir(directory, trusted)
        kw = {k: spec[k] for k in ("max_length", "pooling", "normalize") if k in spec}
        try:
            return load_hf_encoder(member(directory, spec.get("encoder", "encoder"), "encoder"), **kw)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"cannot load the encoder in {str(directory)!r}: {exc}") from exc


def _load_hf_dir(directory: Path, trusted: bool) -> Any:
    """A Hugging Face folder: safetensors weights, or pickled ``pytorch_model.bin`` only if trusted."""
    safe = sorted(p.name for p in directory.glob("*.safetensors"))
    pickled = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if not safe and not pickled:
        raise ModelFileError(f"{str(directory)!r} holds a config.json but no weights (*.safetensors); "
                             "save the model with save_pretrained(..., safe_serialization=True)")
    if not safe and not trusted:
        raise UnsafeFileError(
            f"{str(directory)!r} holds its weights only as {', '.join(pickled)}, a pickle-based format whose "
            "loading can run arbitrary code; convert it to safetensors (save_pretrained(..., "
            "safe_serialization=True)), or pass trusted=True (CLI: --trusted) only if you trust its source"
        )
    try:
        return load_hf_encoder(directory, use_safetensors=bool(safe))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot load the Hugging Face model in {str(directory)!r}: {str(exc)[:300]}") from exc
