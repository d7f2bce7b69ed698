"""Adapters give the measurement core one interface over every kind of model.

``prepare`` turns a batch of inputs into what the model takes (untimed: tensor conversion,
tokenization); ``run`` is the forward pass the latency harness times; ``to_numpy`` turns its output
into an array for the quality metrics. New model kinds (quantized backends, ensembles) plug in with
:func:`register_adapter`.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["ModelAdapter", "register_adapter", "adapt", "TorchAdapter", "EncoderAdapter", "SklearnAdapter",
           "OnnxAdapter"]

_FACTORIES: list[tuple[int, Callable[[Any], ModelAdapter | None]]] = []


class ModelAdapter:
    """Base adapter. Subclasses set ``kind`` and ``output`` and implement prepare/run/to_numpy."""

    kind = "model"
    output = "logits"  # "logits" | "proba" | "label" | "embedding" | "value"
    text_input = False  # True when the model takes sentences rather than arrays

    def __init__(self, model: Any):
        self.model = model

    def prepare(self, inputs: Any) -> Any:
        return inputs

    def run(self, prepared: Any) -> Any:
        raise NotImplementedError

    def to_numpy(self, out: Any) -> np.ndarray:
        return np.asarray(out)

    def params(self) -> tuple[int | None, int | None]:
        return None, None

    def size_bytes(self) -> int | None:
        """Bytes on disk as actually saved by ``ss.save`` (summed over the files written)."""
        from ..io import save

        with tempfile.TemporaryDirectory() as tmp:
            try:
                save(self.model, Path(tmp) / "m")
            except ModelError:
                return None
            return sum(f.stat().st_size for f in (Path(tmp) / "m").rglob("*") if f.is_file())

    def macs(self, prepared_one: Any) -> int | None:
        return None

    def peak_memory(self, prepared: Any) -> int | None:
        return None

    @contextlib.contextmanager
    def threads(self, n: int | None) -> Iterator[None]:
        from .._utils import threads

        with threads(n):
            yield


def register_adapter(factory: Callable[[Any], ModelAdapter | None], priority: int = 0):
    """Register ``factory(model) -> ModelAdapter | None``; higher priority is tried first."""
    _FACTORIES.append((priority, factory))
    _FACTORIES.sort(key=lambda t: -t[0])
    return factory


def adapt(model: Any) -> ModelAdapter:
    if isinstance(model, ModelAdapter):
        return model
    for _, factory in _FACTORIES:
        adapter = factory(model)
        if adapter is not None:
            return adapter
    raise ModelError(
        f"cannot measure a {type(model).__module__}.{type(model).__name__}: pass a torch nn.Module, a sentence "
        "encoder (with .encode), a scikit-learn estimator, an ss.io.OnnxModel, or register an adapter with "
        "slimstack.measure.register_adapter"
    )


class TorchAdapter(ModelAdapter):
    kind = "torch"

    def __init__(self, model: Any):
        super().__init__(model)
        import torch

        self._torch = torch
        model.eval()

    def prepare(self, inputs: Any) -> Any:
        return self._torch.as_tensor(np.ascontiguousarray(inputs))

    def run(self, prepared: Any) -> Any:
        with self._torch.inference_mode():
            return self.model(prepared)

    def to_numpy(self, out: Any) -> np.ndarray:
        out = getattr(out, "logits", out)  # Hugging Face task models return an output object
        return out.detach().float().numpy()

    def params(self) -> tuple[int, int]:
        total = nonzero = 0
        for p in self.model.parameters():
            total += p.numel()
            nonzero += int(self._torch.count_nonzero(p.detach()))
        return total, nonzero

    def size_bytes(self) -> int | None:
        size = super().size_bytes()
        if size is None:  # not rebuildable from JSON: report the raw safetensors weights size
            from ..io import save_state

            with tempfile.TemporaryDirectory() as tmp:
                save_state(self.model, Path(tmp) / "w.safetensors")
                size = (Path(tmp) / "w.safetensors").stat().st_size
        return size

    def _call(self, prepared: Any) -> Any:
        return self.run(prepared)

    def macs(self, prepared_one: Any) -> int | None:
        """Multiply-accumulates of one forward pass, counted by torch's FLOP counter (matmul, conv, attention)."""
        from torch.utils.flop_counter import FlopCounterMode

        try:
            with FlopCounterMode(display=False) as counter:
                self._call(prepared_one)
        except Exception:  # quantized or custom kernels the counter does not know
            return None
        return int(counter.get_total_flops() // 2)

    def peak_memory(self, prepared: Any) -> int | None:
        return torch_peak_memory(lambda: self._call(prepared))


class EncoderAdapter(TorchAdapter):
    """Sentence encoders: inputs are sentences, tokenized untimed; outputs are embeddings."""

    kind = "torch-encoder"
    output = "embedding"
    text_input = True

    def prepare(self, inputs: Any) -> Any:
        return self.model.tokenize(list(inputs))

    def run(self, prepared: Any) -> Any:
        with self._torch.inference_mode():
            return self.model(**prepared)


class SklearnAdapter(ModelAdapter):
    kind = "sklearn"

    def __init__(self, model: Any):
        super().__init__(model)
        if hasattr(model, "predict_proba"):
            self.output = "proba"
        elif getattr(model, "_estimator_type", None) == "regressor" or _is_regressor(model):
            self.output = "value"
        else:
            self.output = "label"

    def prepare(self, inputs: Any) -> Any:
        x = np.asarray(inputs)
        return x.reshape(len(x), -1)

    def run(self, prepared: Any) -> Any:
        if self.output == "proba":
            return self.model.predict_proba(prepared)
        return self.model.predict(prepared)

    def params(self) -> tuple[int | None, int | None]:
        """Learned numbers for the model families where that count means something; None otherwise."""
        m = self.model
        if hasattr(m, "tree_"):
            return int(m.tree_.node_count), int(m.tree_.node_count)
        trees = np.ravel(getattr(m, "estimators_", [])) if hasattr(m, "estimators_") else []
        if len(trees) and all(hasattr(e, "tree_") for e in trees):
            n = int(sum(e.tree_.node_count for e in trees))
            return n, n
        arrays = list(getattr(m, "coefs_", []) or []) + list(getattr(m, "intercepts_", []) or [])
        if not arrays and hasattr(m, "coef_"):
            arrays = [np.asarray(m.coef_), np.atleast_1d(getattr(m, "intercept_", np.zeros(0)))]
        if not arrays:
            return None, None
        return int(sum(a.size for a in arrays)), int(sum(np.count_nonzero(a) for a in arrays))

    def peak_memory(self, prepared: Any) -> int | None:
        import tracemalloc

        tracemalloc.start()
        try:
            self.run(prepared)
            return int(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()


class OnnxAdapter(ModelAdapter):
    kind = "onnxruntime"

    def prepare(self, inputs: Any) -> Any:
        return {self.model.input_names[0]: np.ascontiguousarray(inputs, dtype=np.float32)}

    def run(self, prepared: Any) -> Any:
        return self.model.run(prepared)[0]

    @contextlib.contextmanager
    def threads(self, n: int | None) -> Iterator[None]:
        self.model.set_threads(n)
        yield

    def params(self) -> tuple[int, int]:
        from onnx import numpy_helper

        total = nonzero = 0
        for init in self.model.proto.graph.initializer:
            a = numpy_helper.to_array(init)
            total += a.size
            nonzero += int(np.count_nonzero(a))
        return total, nonzero


def torch_peak_memory(fn: Callable[[], Any]) -> int | None:
    """Peak bytes of tensor storage alive at once during ``fn()``, above what existed before it.

    Every tensor an operator creates is counted from its creation until its last Python reference
    goes (a ``TorchDispatchMode`` sees each operator's outputs). Weights and inputs that exist
    before the call are not counted, so this is the inference's working memory.
    """
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class _LiveBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = self.peak = 0
            self.sizes: dict[int, int] = {}

        def _free(self, key: int) -> None:
            self.live -= self.sizes.pop(key, 0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                    try:
                        storage = t.untyped_storage()
                    except (RuntimeError, NotImplementedError):  # opaque (e.g. packed quantized) tensors
                        continue
                    key = storage.data_ptr()
                    if key and key not in self.sizes:
                        self.sizes[key] = storage.nbytes()
                        self.live += storage.nbytes()
                        self.peak = max(self.peak, self.live)
                        weakref.finalize(t, self._free, key)
            return out

    tracker = _LiveBytes()
    try:
        with torch.inference_mode(), tracker:
            fn()
    except Exception:  # kernels the dispatch mode cannot see through
        return None
    return int(tracker.peak)


def _is_regressor(model: Any) -> bool:
    try:
        from sklearn.base import is_regressor

        return bool(is_regressor(model))
    except Exception:
        return False


def _torch_factory(model: Any) -> ModelAdapter | None:
    try:
        import torch
    except ImportError:
        return None
    if not isinstance(model, torch.nn.Module):
        return None
    if hasattr(model, "encode") and hasattr(model, "tokenize"):
        return EncoderAdapter(model)
    return TorchAdapter(model)


def _sklearn_factory(model: Any) -> ModelAdapter | None:
    if hasattr(model, "predict") and hasattr(model, "get_params"):
        return SklearnAdapter(model)
    return None


def _onnx_factory(model: Any) -> ModelAdapter | None:
    from ..io import OnnxModel

    return OnnxAdapter(model) if isinstance(model, OnnxModel) else None


register_adapter(_torch_factory)
register_adapter(_sklearn_factory, priority=-10)
register_adapter(_onnx_factory)
