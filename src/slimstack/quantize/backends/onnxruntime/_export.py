"""Export a PyTorch model to ONNX from a deep copy, then let ONNX Runtime fuse transformer blocks.

``torch.onnx.export`` traces the module it is given, and on a Hugging Face encoder that trace left
the caller's model producing different outputs afterwards (STS-B 0.8672 -> 0.8651), so only a
deep copy is ever exported. The legacy TorchScript exporter is used because it runs offline and
keeps dynamic batch and sequence axes; encoders are exported with eager attention, whose pattern
ONNX Runtime's BERT optimizer fuses into its Attention kernel.
"""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from ....errors import ModelError
from ...._arch import is_encoder

__all__ = ["export_onnx", "optimize_transformer"]

OPSET = 17


def export_onnx(model: nn.Module, example: Any) -> onnx.ModelProto:
    """ONNX graph of a copy of ``model``; ``example`` is a token dict (encoders) or an input tensor."""
    twin = copy.deepcopy(model).eval()
    if is_encoder(twin):
        hf = twin.model
        if hasattr(hf, "set_attn_implementation"):
            hf.set_attn_implementation("eager")
        else:
            hf.config._attn_implementation = "eager"
        args: tuple = (example["input_ids"][:2], example["attention_mask"][:2])
        names = ["input_ids", "attention_mask"]
        axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "output": {0: "batch"}}
    else:
        args = (example[:2],)
        names = ["input"]
        axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(twin, args, buf, input_names=names, output_names=["output"], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many types; the user needs the first line
        raise ModelError(f"torch.onnx.export failed on {type(model).__name__} ({str(exc).splitlines()[0]}); "
                         "use backend='torch'") from exc
    return onnx.load_model_from_string(buf.getvalue())


def optimize_transformer(proto: onnx.ModelProto, hf_config: Any) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Fuse attention, GELU and LayerNorm with ONNX Runtime's transformer optimizer (BERT-like encoders)."""
    from onnxruntime.transformers.optimizer import optimize_model

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.onnx"
        onnx.save(proto, str(src))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimize_model(str(src), model_type="bert", num_heads=int(hf_config.num_attention_heads),
                                 hidden_size=int(hf_config.hidden_size), opt_level=1)
        stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
        return opt.model, stats
