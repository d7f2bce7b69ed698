"""Save/load and measurement of the ONNX Runtime models.

Saved as ``model.onnx`` plus JSON (and, for encoders, the tokenizer), so ``ss.load`` returns a
model with the same interface, and the .onnx file also runs in any ONNX Runtime on its own.
"""

from __future__ import annotations

import contextlib
import gzip
import tempfile
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
    saves = (OrtSentenceEncoder, OrtClassifier)

    @staticmethod
    def save(obj: OrtModel, directory: Path) -> dict[str, Any]:
        (directory / "model.onnx").write_bytes(obj.to_bytes())
        spec: dict[str, Any] = {"file": "model.onnx", "kind": "encoder" if isinstance(obj, OrtSentenceEncoder)
                                else "classifier", **obj.get_config()}
        if isinstance(obj, OrtSentenceEncoder):
            tok_dir = directory / "tokenizer"
            obj.tokenizer.save_pretrained(str(tok_dir))
            for f in list(tok_dir.iterdir()):  # the vocabulary JSON gzips 3.5x; ~3% of an int8 MiniLM file
                f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes(), 9, mtime=0))
                f.unlink()
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
            tok = _load_tokenizer(directory / spec["tokenizer"])
            return OrtSentenceEncoder(proto, tok, dim=spec["dim"], max_length=spec["max_length"])
        return OrtClassifier(proto, input_shape=spec["input_shape"])


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    if not path.is_dir():
        raise ModelFileError(f"the tokenizer directory {str(path)!r} is missing; save the model again")
    with tempfile.TemporaryDirectory() as tmp:
        for f in path.iterdir():
            name = f.name[:-3] if f.name.endswith(".gz") else f.name
            data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
            (Path(tmp) / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(tmp, local_files_only=True)


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
