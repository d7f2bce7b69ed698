"""Save/load and measurement of the ONNX Runtime models.

Saved as ``model.onnx`` plus JSON (and, for encoders, the tokenizer), so ``ss.load`` returns a
model with the same interface, and the .onnx file also runs in any ONNX Runtime on its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ....errors import ModelFileError
from ....io import register_format
from ....measure import ModelAdapter, register_adapter
from ._models import OrtClassifier, OrtModel, OrtSentenceEncoder

__all__ = ["OrtFormat"]


@register_format("onnxruntime_model")
class OrtFormat:
    priority = 30

    @staticmethod
    def can_save(obj: Any) -> bool:
        return type(obj) in (OrtSentenceEncoder, OrtClassifier)

    @staticmethod
    def save(obj: OrtModel, directory: Path) -> dict[str, Any]:
        (directory / "model.onnx").write_bytes(obj.to_bytes())
        spec: dict[str, Any] = {"file": "model.onnx", "kind": "encoder" if isinstance(obj, OrtSentenceEncoder)
                                else "classifier", **obj.get_config()}
        if isinstance(obj, OrtSentenceEncoder):
            tok_dir = directory / "tokenizer"
            obj.tokenizer.save_pretrained(str(tok_dir))
            if (tok_dir / "vocab.txt").exists() and (tok_dir / "tokenizer.json").exists():
                # WordPiece rebuilds its fast tokenizer from vocab.txt; the 3x larger JSON copy is redundant.
                (tok_dir / "tokenizer.json").unlink()
            spec["tokenizer"] = "tokenizer"
        return spec

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> OrtModel:
        file = directory / spec.get("file", "model.onnx")
        if not file.exists():
            raise ModelFileError(f"{str(file)!r} is missing; save the model again")
        try:
            proto = onnx.load(str(file))
        except Exception as exc:
            raise ModelFileError(f"{str(file)!r} is not a valid ONNX model ({exc})") from exc
        if spec.get("kind") == "encoder":
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(directory / spec["tokenizer"]), local_files_only=True)
            return OrtSentenceEncoder(proto, tok, dim=spec["dim"], max_length=spec["max_length"])
        return OrtClassifier(proto, input_shape=spec["input_shape"])


class _OrtAdapter(ModelAdapter):
    kind = "onnxruntime-int8"

    def run(self, prepared: Any) -> Any:
        return self.model.run_feeds(prepared)

    @contextlib.contextmanager
    def threads(self, n: int | None) -> Iterator[None]:
        old = self.model.threads
        self.model.set_threads(n)
        try:
            yield
        finally:
            self.model.set_threads(old)

    def params(self) -> tuple[int, int]:
        from onnx import numpy_helper

        total = nonzero = 0
        for init in self.model.proto.graph.initializer:
            a = numpy_helper.to_array(init)
            if a.dtype.kind in "fiu" and a.size > 1:
                total += a.size
                nonzero += int(np.count_nonzero(a))
        return total, nonzero


class _OrtEncoderAdapter(_OrtAdapter):
    output = "embedding"
    text_input = True

    def prepare(self, inputs: Any) -> Any:
        return OrtSentenceEncoder.feeds(self.model.tokenize(list(inputs)))


class _OrtClassifierAdapter(_OrtAdapter):
    output = "logits"

    def prepare(self, inputs: Any) -> Any:
        return {"input": np.ascontiguousarray(inputs, dtype=np.float32)}


def _factory(model: Any) -> ModelAdapter | None:
    if isinstance(model, OrtSentenceEncoder):
        return _OrtEncoderAdapter(model)
    if isinstance(model, OrtClassifier):
        return _OrtClassifierAdapter(model)
    return None


register_adapter(_factory, priority=20)
