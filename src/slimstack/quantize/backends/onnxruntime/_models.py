"""ONNX Runtime models that keep the interface of the PyTorch model they came from.

:class:`OrtSentenceEncoder` tokenizes with the original tokenizer and keeps ``.tokenize``,
``.encode`` and ``forward(input_ids, attention_mask)``; :class:`OrtClassifier` takes the same array
or tensor input and returns logits as a tensor, as the original module did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch

__all__ = ["OrtModel", "OrtSentenceEncoder", "OrtClassifier", "session_options"]


def session_options(threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return opts


class OrtModel:
    """An ONNX graph with a lazily created CPU InferenceSession (re-created when the thread count changes)."""

    def __init__(self, proto: onnx.ModelProto | bytes, threads: int | None = None):
        self.proto = proto if isinstance(proto, onnx.ModelProto) else onnx.load_model_from_string(bytes(proto))
        self.threads = threads
        self._session: Any = None

    @property
    def session(self):
        if self._session is None:
            import onnxruntime as ort

            self._session = ort.InferenceSession(self.proto.SerializeToString(), session_options(self.threads),
                                                 providers=["CPUExecutionProvider"])
        return self._session

    def set_threads(self, threads: int | None) -> None:
        if threads != self.threads:
            self.threads, self._session = threads, None

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]

    def to_bytes(self) -> bytes:
        return self.proto.SerializeToString()

    def eval(self):  # torch-style no-ops, so code written for the original module keeps working
        return self

    def train(self, mode: bool = True):
        return self


class OrtSentenceEncoder(OrtModel):
    """A sentence encoder run by ONNX Runtime: ``encode(texts) -> (n, dim)`` like :class:`ss.zoo.SentenceEncoder`.

    Examples
    --------
    >>> q = ss.quantize(ss.zoo.minilm(), ss.DynamicInt8(backend="onnxruntime"))   # doctest: +SKIP
    >>> q.model.encode(["A man plays a flute."]).shape                           # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, proto: onnx.ModelProto | bytes, tokenizer: Any, *, dim: int, max_length: int = 128,
                 threads: int | None = None):
        super().__init__(proto, threads)
        self.tokenizer, self.dim, self.max_length = tokenizer, int(dim), int(max_length)

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim, "max_length": self.max_length}

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        from ....zoo import pad_ids, token_ids

        return pad_ids(token_ids(self.tokenizer, texts, self.max_length), self.tokenizer)

    @staticmethod
    def feeds(batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(batch[k].numpy(), dtype=np.int64) for k in ("input_ids", "attention_mask")}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run_feeds(self.feeds({"input_ids": input_ids, "attention_mask": attention_mask})))

    __call__ = forward

    def encode(self, texts: list[str] | str, batch_size: int = 128) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size`` sorted by token count; float32 (n, dim), caller's order."""
        from ....zoo import length_batches

        if isinstance(texts, str):
            texts = [texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx, batch in length_batches(self.tokenizer, texts, self.max_length, batch_size):
            out[idx] = self.run_feeds(self.feeds(batch))
        return out


class OrtClassifier(OrtModel):
    """An array model (classifier or regressor) run by ONNX Runtime; returns a float tensor like the original."""

    def __init__(self, proto: onnx.ModelProto | bytes, *, input_shape: list[int], threads: int | None = None):
        super().__init__(proto, threads)
        self.input_shape = [int(d) for d in input_shape]

    def get_config(self) -> dict[str, Any]:
        return {"input_shape": self.input_shape}

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        arr = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return torch.from_numpy(self.run_feeds({"input": np.ascontiguousarray(arr, dtype=np.float32)}))

    forward = __call__
