"""Quantize an exported graph with onnxruntime.quantization (dynamic, or static in QDQ form).

:class:`OrtBuilder` exports and optimizes once, then builds any variant: all quantizable nodes, or
all but some kept in float (the accuracy-aware fallback asks for many such variants).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from torch import nn

from ....errors import ConfigError
from ...._arch import is_encoder
from ..._data import batches
from ..._scheme import Scheme
from ._export import export_onnx, optimize_transformer
from ._models import OrtClassifier, OrtModel, OrtSentenceEncoder

__all__ = ["OrtBuilder", "QUANTIZABLE_OPS"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization prints progress and logs pre-processing advice on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)

QUANTIZABLE_OPS = ("MatMul", "Gemm", "Conv", "Attention", "EmbedLayerNormalization", "Gather")
_CALIBRATE = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


class _Reader:
    """CalibrationDataReader over the same batches the torch backend calibrates on."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # some ORT versions call this between passes
        pass


def _trim_positions(proto: onnx.ModelProto, max_length: int) -> None:
    """Keep only the first ``max_length`` rows of the fused graph's position table.

    The encoder truncates every input to ``max_length`` tokens, so later rows are never read;
    at 512 x 384 floats they are 2.5% of an int8 MiniLM file.
    """
    from onnx import numpy_helper

    fused = [n for n in proto.graph.node if n.op_type == "EmbedLayerNormalization"]
    if not fused or max_length < 1 or len(fused[0].input) < 4:
        return
    for init in proto.graph.initializer:
        if init.name == fused[0].input[3]:
            table = numpy_helper.to_array(init)
            if table.ndim == 2 and table.shape[0] > max_length:
                init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(table[:max_length]), init.name))
            return


def _quantized_node(node: onnx.NodeProto, producer: dict[str, str], consumers: dict[str, set[str]]) -> bool:
    """A node kept its name but runs on int8: QDQ inputs, a quantized table (Gather), or a dequantized output."""
    return (any(producer.get(i) == "DequantizeLinear" or i.endswith("_quantized") for i in node.input)
            or any("DequantizeLinear" in consumers.get(o, ()) for o in node.output))


class OrtBuilder:
    """Exports ``model`` (from a copy) and builds ONNX Runtime int8 variants of it."""

    def __init__(self, model: nn.Module, scheme: Scheme, example: Any, calibration: Any = None):
        if scheme.weight_only:
            raise ConfigError(f"{scheme.technique} keeps activations in float, which the ONNX Runtime backend "
                              "does not offer; use backend='torch'")
        if scheme.static and scheme.observer not in _CALIBRATE:
            raise ConfigError(f"{scheme.technique}.observer={scheme.observer!r} has no ONNX Runtime calibrator; with "
                              f"backend='onnxruntime' use one of {sorted(_CALIBRATE)}, or backend='torch'")
        if scheme.static and scheme.smoothquant_alpha > 0:
            raise ConfigError(f"{scheme.technique}.smoothquant_alpha is applied by the torch backend only; "
                              "use backend='torch' or smoothquant_alpha=0")
        self.scheme, self.encoder = scheme, is_encoder(model)
        self.fusions: dict[str, int] = {}
        proto = export_onnx(model, example)
        if self.encoder and scheme.optimize_graph and hasattr(model.model, "config"):
            try:
                proto, self.fusions = optimize_transformer(proto, model.model.config)
            except Exception as exc:  # an architecture the BERT fuser does not know: keep the plain graph
                self.fusions = {"error": str(exc).splitlines()[0]}
        if self.encoder:
            _trim_positions(proto, int(getattr(model, "max_length", 0)))
        self.float_proto = proto
        self.tokenizer = getattr(model, "tokenizer", None)
        self.dim = int(model.model.config.hidden_size) if self.encoder else 0
        self.max_length = int(getattr(model, "max_length", 128))
        self.input_shape = [] if self.encoder else [int(d) for d in example.shape[1:]]
        self._feeds: list[dict[str, np.ndarray]] = []
        if calibration is not None:
            self._feeds = [self._to_feeds(b) for _, b in batches(model, calibration, 64)]

    def _to_feeds(self, batch: Any) -> dict[str, np.ndarray]:
        if self.encoder:
            return OrtSentenceEncoder.feeds(batch)
        return {"input": np.ascontiguousarray(batch.numpy(), dtype=np.float32)}

    def units(self) -> list[str]:
        """Names of the nodes quantization can touch: weight matmuls, convs, fused attention, embeddings."""
        inits = {i.name for i in self.float_proto.graph.initializer}
        out = []
        for node in self.float_proto.graph.node:
            if node.op_type not in QUANTIZABLE_OPS:
                continue
            if node.op_type in ("MatMul", "Gemm", "Conv") and (len(node.input) < 2 or node.input[1] not in inits):
                continue  # activation x activation: nothing stored to shrink
            if node.op_type == "Gather" and node.input[0] not in inits:
                continue
            out.append(node.name)
        return out

    def wrap(self, proto: onnx.ModelProto) -> OrtModel:
        if self.encoder:
            return OrtSentenceEncoder(proto, self.tokenizer, dim=self.dim, max_length=self.max_length)
        return OrtClassifier(proto, input_shape=self.input_shape)

    def build(self, float_units: set[str] | frozenset[str] = frozenset()) -> tuple[OrtModel, list[dict[str, Any]]]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

        cfg = self.scheme
        units = self.units()
        exclude = [u for u in units if u in float_units]
        per_channel = cfg.per_channel
        extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
        with tempfile.TemporaryDirectory() as tmp, _quiet():
            src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            onnx.save(self.float_proto, str(src))
            if cfg.activations == "dynamic":
                quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                                 reduce_range=cfg.reduce_range, nodes_to_exclude=exclude, extra_options=extra)
            else:
                reader = _Reader(self._feeds[: max(1, cfg.calibration_size // 64)])
                method = getattr(CalibrationMethod, _CALIBRATE[cfg.observer])
                opts = dict(extra)
                if cfg.observer == "percentile":
                    opts["CalibPercentile"] = cfg.percentile
                quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                nodes_to_exclude=exclude, calibrate_method=method, extra_options=opts)
            proto = onnx.load(str(dst))
        return self.wrap(proto), self._records(units, proto, set(exclude))

    def _records(self, units: list[str], proto: onnx.ModelProto, excluded: set[str]) -> list[dict[str, Any]]:
        ops = {n.name: n.op_type for n in self.float_proto.graph.node}
        left = {n.name: n for n in proto.graph.node if (n.name, n.op_type) in {(k, v) for k, v in ops.items()}}
        producer = {o: n.op_type for n in proto.graph.node for o in n.output}
        consumers: dict[str, set[str]] = {}
        for n in proto.graph.node:
            for i in n.input:
                consumers.setdefault(i, set()).add(n.op_type)
        records = []
        for u in units:
            rec = {"name": u, "type": ops[u]}
            if u in excluded:
                rec.update(status="float", reason="kept in float (fallback or config.skip)")
            elif u in left and not _quantized_node(left[u], producer, consumers):
                rec.update(status="float", reason="onnxruntime.quantization left this node in float")
            else:
                rec.update(status="quantized", kernel="onnxruntime")
            records.append(rec)
        return records
