"""Formats beside plain torch modules: scikit-learn (skops) and ONNX.

The model zoo registers its sentence-encoder format itself (:mod:`slimstack.zoo._encoder_io`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError
from ._embedded import loading, saving
from ._registry import member, register_format
from ._skops import load_skops

__all__ = ["SklearnFormat", "OnnxFormat", "OnnxModel"]


@register_format("sklearn")
class SklearnFormat:
    priority = 0
    suffixes = (".skops",)

    @staticmethod
    def can_save(obj: Any) -> bool:
        return hasattr(obj, "fit") and hasattr(obj, "get_params") and type(obj).__module__.startswith(("sklearn", "slimstack"))

    @staticmethod
    def save(obj: Any, directory: Path) -> dict[str, Any]:
        import skops.io as sio

        with saving():  # torch members pack their modules as ss.save files (io/_embedded.py)
            sio.dump(obj, str(directory / "model.skops"))
        return {"file": "model.skops", "type": f"{type(obj).__module__}.{type(obj).__name__}"}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> Any:
        with loading(trusted):
            return load_skops(member(directory, spec.get("file", "model.skops")), trusted)

    @staticmethod
    def load_file(path: Path, trusted: bool) -> Any:
        with loading(trusted):
            return load_skops(path, trusted)


class OnnxModel:
    """An ONNX model run by ONNX Runtime: ``model(x) -> np.ndarray`` of the first output.

    ``threads`` fixes ONNX Runtime's intra-op thread count (it sizes its own pool at session start).
    """

    def __init__(self, model: Any, threads: int | None = None):
        import onnx

        self.proto = model if isinstance(model, onnx.ModelProto) else onnx.load_model_from_string(bytes(model))
        self.threads = threads
        self._session = None

    @property
    def session(self):
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = int(self.threads)
                opts.inter_op_num_threads = 1
            self._session = ort.InferenceSession(self.proto.SerializeToString(), opts,
                                                 providers=["CPUExecutionProvider"])
        return self._session

    def set_threads(self, threads: int | None) -> None:
        if threads != self.threads:
            self.threads, self._session = threads, None

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run({self.input_names[0]: np.asarray(x, dtype=np.float32)})[0]

    def to_bytes(self) -> bytes:
        return self.proto.SerializeToString()


def _onnx_load(file: Path) -> OnnxModel:
    import onnx

    if not file.exists():
        raise ModelFileError(f"{str(file)!r} is missing; save the model again")
    try:
        proto = onnx.load(str(file))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ModelFileError(f"{str(file)!r} is not a valid ONNX model ({exc})") from exc
    return OnnxModel(proto)


@register_format("onnx")
class OnnxFormat:
    priority = 5
    suffixes = (".onnx",)

    @staticmethod
    def can_save(obj: Any) -> bool:
        import onnx

        return type(obj) is OnnxModel or isinstance(obj, onnx.ModelProto)

    @staticmethod
    def save(obj: Any, directory: Path) -> dict[str, Any]:
        data = obj.to_bytes() if isinstance(obj, OnnxModel) else obj.SerializeToString()
        (directory / "model.onnx").write_bytes(data)
        return {"file": "model.onnx"}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> OnnxModel:
        return _onnx_load(member(directory, spec.get("file", "model.onnx")))

    @staticmethod
    def load_file(path: Path, trusted: bool) -> OnnxModel:
        return _onnx_load(path)


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "slimstack.json").read_text())
