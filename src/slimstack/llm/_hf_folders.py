"""``ss.load`` of a plain transformers folder builds the class its config names, head included.

A folder's ``config.json`` lists ``architectures`` (what ``save_pretrained`` saved). slimstack loads:

- causal LMs (``LlamaForCausalLM``, ``GPT2LMHeadModel``, ...) as :class:`CausalLM`;
- sequence classifiers (``BertForSequenceClassification``) as :class:`HFTextClassifier`;
- image classifiers (``ViTForImageClassification``) as :class:`HFImageClassifier`;
- base encoders (``BertModel``, sentence-transformers folders) as a ``SentenceEncoder``, as before.

Any other head (masked LM, token classification, question answering, ...) is refused with an error
that names it: loading only its base would drop the head silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ModelError, ModelFileError, UnsafeFileError
from ..io import register_format
from ._io import _PICKLE_WEIGHTS, _SAFE_WEIGHTS, hf_class_names, is_causal_lm_config, load_hf_causal_lm, read_hf_config

__all__ = ["HFTextClassifier", "HFImageClassifier", "HFFolderFormat", "folder_kind"]


def folder_kind(config: dict[str, Any]) -> str:
    """``"causal_lm"``, ``"text_classifier"``, ``"image_classifier"``, ``"base"`` or ``"head:<Class>"``."""
    archs = config.get("architectures") or []
    if not archs:
        return "base"
    if is_causal_lm_config(config):
        return "causal_lm"
    arch = archs[0]
    if arch.endswith("ForSequenceClassification"):
        return "text_classifier"
    if arch.endswith("ForImageClassification"):
        return "image_classifier"
    if arch in hf_class_names("MODEL_MAPPING_NAMES") or arch.endswith("Model"):
        return "base"
    return f"head:{arch}"


class _HFClassifierBase(nn.Module):
    """A transformers classifier with its head, as a prefit classifier (``predict``, ``predict_proba``)."""

    def __init__(self, model: nn.Module, processor: Any = None):
        super().__init__()
        self.model = model.eval()
        self.processor = processor
        self.eval()

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def classes_(self) -> np.ndarray:
        return np.arange(int(self.config.num_labels))

    @property
    def labels(self) -> list[str]:
        id2label = getattr(self.config, "id2label", None) or {}
        return [str(id2label.get(i, i)) for i in range(int(self.config.num_labels))]

    def _inputs(self, X: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def decision_function(self, X: Any) -> np.ndarray:
        with torch.inference_mode():
            return self(**self._inputs(X)).float().numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        return torch.softmax(torch.as_tensor(self.decision_function(X)), -1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(1)]


class HFTextClassifier(_HFClassifierBase):
    """``BertForSequenceClassification`` and kin: texts in, one logit per label out.

    ``forward(input_ids, attention_mask) -> logits``; ``predict(texts)``, ``predict_proba(texts)``.
    """

    max_length = 512

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.processor(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: enc[k] for k in ("input_ids", "attention_mask") if k in enc}

    def _inputs(self, X: Any) -> dict[str, torch.Tensor]:
        return self.tokenize([X] if isinstance(X, str) else list(X))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class HFImageClassifier(_HFClassifierBase):
    """``ViTForImageClassification`` and kin: ``forward(pixel_values) -> logits`` on float32 (n, c, h, w)."""

    def _inputs(self, X: Any) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32))}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def _check_weights(folder: Path, trusted: bool) -> bool:
    if any((folder / f).exists() for f in _SAFE_WEIGHTS):
        return True
    if not any((folder / f).exists() for f in _PICKLE_WEIGHTS):
        raise ModelFileError(f"{str(folder)!r} holds no weights (model.safetensors); save the model again")
    if not trusted:
        raise UnsafeFileError(f"{str(folder)!r} holds its weights only as pytorch_model.bin (pickle, which can run "
                              "code); pass trusted=True only if you trust its source, or re-save it with safetensors")
    return False


def load_hf_classifier(folder: Path, kind: str, trusted: bool = False) -> _HFClassifierBase:
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, AutoTokenizer

    from ._zoo import _quiet_transformers

    safe = _check_weights(folder, trusted)
    _quiet_transformers()
    try:
        if kind == "text_classifier":
            model = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True,
                                                                       use_safetensors=safe)
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            return HFTextClassifier(model, tokenizer)
        model = AutoModelForImageClassification.from_pretrained(str(folder), local_files_only=True,
                                                                use_safetensors=safe)
        return HFImageClassifier(model)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"cannot load the classifier in {str(folder)!r}: {str(exc)[:300]}") from exc


def load_hf_folder(folder: Path, trusted: bool = False) -> Any:
    """The model a transformers folder holds, as the slimstack class for its kind (head kept)."""
    config = read_hf_config(folder)
    kind = folder_kind(config)
    if kind == "causal_lm":
        return load_hf_causal_lm(folder, trusted=trusted)
    if kind in ("text_classifier", "image_classifier"):
        return load_hf_classifier(folder, kind, trusted)
    if kind == "base":
        from ..io import get_format

        return get_format("sentence_encoder").load(folder, {"hf_dir": True}, trusted)
    head = kind.split(":", 1)[1]
    raise ModelError(
        f"{str(folder)!r} holds a {head}; ss.load keeps a model's head and knows causal LMs (*ForCausalLM), "
        "sequence classifiers (*ForSequenceClassification) and image classifiers (*ForImageClassification). "
        f"Only the base encoder of a {head} can be loaded, without its head: ss.zoo.load_hf_encoder(path)"
    )


@register_format("hf_classifier")
class HFFolderFormat:
    """``ss.save`` of an :class:`HFTextClassifier`/:class:`HFImageClassifier`; ``ss.load`` of any
    transformers folder (``claims_hf_dir``)."""

    priority = 15
    saves = (HFTextClassifier, HFImageClassifier)

    @staticmethod
    def save(obj: _HFClassifierBase, directory: Path) -> dict[str, Any]:
        obj.model.save_pretrained(str(directory / "model"))
        if obj.processor is not None:
            obj.processor.save_pretrained(str(directory / "model"))
        return {"model": "model", "architecture": type(obj.model).__name__}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> Any:
        if spec.get("hf_dir"):
            return load_hf_folder(directory, trusted)
        return load_hf_folder(directory / spec.get("model", "model"), trusted)

    @staticmethod
    def claims_hf_dir(directory: Path) -> bool:
        return True
