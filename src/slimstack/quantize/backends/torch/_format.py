"""Save/load and measurement of torch models holding slimstack's integer modules.

Saved as ``model.safetensors`` (the int8 / packed int4 tensors exactly as stored) plus JSON: the
float skeleton (a registered architecture, a tree of standard layers, or a Hugging Face config
and tokenizer) and the class and arguments of every integer module. No pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ....errors import ModelFileError
from ....io import register_format
from ....io import WEIGHTS, build_from_spec, load_state, module_spec, save_state
from ....measure import EncoderAdapter, TorchAdapter, register_adapter
from ._convert import set_module
from ._kernels import register_int8_gemm_macs
from ._modules import QUANT_MODULES

__all__ = ["has_quant_modules", "TorchQuantFormat"]


def has_quant_modules(obj: Any) -> bool:
    return isinstance(obj, nn.Module) and any(type(m).__name__ in QUANT_MODULES and type(m) is QUANT_MODULES[
        type(m).__name__] for m in obj.modules())


def _float_spec(m: nn.Module) -> dict[str, Any] | None:
    """Describe ``m`` as if its integer modules were placeholders (they are rebuilt from ``layers``)."""
    if type(m).__name__ in QUANT_MODULES:
        return {"layer": "Identity", "args": {}}
    spec = module_spec(m)
    if spec is not None:
        return spec
    if type(m) is nn.Sequential:
        children = [_float_spec(c) for c in m]
        return None if any(c is None for c in children) else {"sequential": children}
    return None


@register_format("torch_int8")
class TorchQuantFormat:
    priority = 30

    @staticmethod
    def can_save(obj: Any) -> bool:
        from ....zoo import SentenceEncoder

        return has_quant_modules(obj) and (type(obj) is SentenceEncoder or _is_causal_lm(obj)
                                           or _float_spec(obj) is not None)

    @staticmethod
    def save(obj: nn.Module, directory: Path) -> dict[str, Any]:
        from ....zoo import SentenceEncoder

        layers = {n: {"class": type(m).__name__, "args": m.spec()} for n, m in obj.named_modules()
                  if type(m).__name__ in QUANT_MODULES}
        if type(obj) is SentenceEncoder:
            obj.model.config.save_pretrained(str(directory / "encoder"))
            obj.tokenizer.save_pretrained(str(directory / "encoder"))
            skeleton: dict[str, Any] = {"encoder": "encoder", **obj.get_config()}
        elif _is_causal_lm(obj):  # a transformers config + tokenizer; weights (int and float) in WEIGHTS
            obj.model.config.save_pretrained(str(directory / "lm"))
            obj.tokenizer.save_pretrained(str(directory / "lm"))
            linears = [n for n, m in obj.named_modules() if type(m) is nn.Linear]
            skeleton = {"causal_lm": "lm", "name": obj.name, "linear": linears}
        else:
            skeleton = {"module": _float_spec(obj)}
        save_state(obj, directory / WEIGHTS)
        return {"skeleton": skeleton, "layers": layers}

    @staticmethod
    def load(directory: Path, spec: dict[str, Any], trusted: bool) -> nn.Module:
        skeleton, layers = spec["skeleton"], spec["layers"]
        if "encoder" in skeleton:
            model: nn.Module = _encoder_skeleton(directory / skeleton["encoder"], skeleton)
        elif "causal_lm" in skeleton:
            model = _lm_skeleton(directory / skeleton["causal_lm"], skeleton)
        else:
            model = build_from_spec(skeleton["module"])
        for name, entry in layers.items():
            cls = QUANT_MODULES.get(entry["class"])
            if cls is None:
                raise ModelFileError(f"unknown quantized layer type {entry['class']!r} in {str(directory)!r}")
            set_module(model, name, cls(**entry["args"]))
        state = load_state(directory / WEIGHTS)
        hf = getattr(model, "model", None)
        if "encoder" in skeleton and getattr(hf, "pooler", None) is not None and not any(
                k.startswith("model.pooler.") for k in state):
            hf.pooler = None  # saved without a pooling head (sentence encoders do not use it)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"weights in {str(directory)!r} do not fit the saved description: {exc}") from exc
        return model.eval()


def _is_causal_lm(obj: Any) -> bool:
    from ....llm import CausalLM

    return type(obj) is CausalLM


def _config_and_tokenizer(path: Path, what: str) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoTokenizer

    try:
        return (AutoConfig.from_pretrained(str(path), local_files_only=True),
                AutoTokenizer.from_pretrained(str(path), local_files_only=True))
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"cannot read the {what} config or tokenizer in {str(path)!r}: {exc}") from exc


def _lm_skeleton(path: Path, skeleton: dict[str, Any]) -> nn.Module:
    """The saved causal LM's architecture with empty weights; Conv1D layers saved as Linear become Linear."""
    from transformers import AutoModelForCausalLM

    from ....llm import CausalLM

    config, tok = _config_and_tokenizer(path, "causal LM")
    lm = CausalLM(AutoModelForCausalLM.from_config(config), tok, name=skeleton.get("name"))
    for name in skeleton.get("linear", []):
        m = lm.get_submodule(name)
        if type(m).__name__ == "Conv1D":  # GPT-2 projections were quantized (and saved) as nn.Linear
            set_module(lm, name, nn.Linear(m.weight.shape[0], m.weight.shape[1], bias=m.bias is not None))
    return lm


def _encoder_skeleton(path: Path, skeleton: dict[str, Any]) -> nn.Module:
    from transformers import AutoModel

    from ....zoo import SentenceEncoder

    config, tok = _config_and_tokenizer(path, "encoder")
    hf = AutoModel.from_config(config, attn_implementation="sdpa")
    kw = {k: skeleton[k] for k in ("max_length", "pooling", "normalize") if k in skeleton}
    return SentenceEncoder(hf.eval(), tok, **kw)


def _count(model: nn.Module) -> tuple[int, int]:
    """Parameters counted as weights, whether stored as float parameters or integer buffers."""
    total = nonzero = 0
    for m in model.modules():
        tensors = list(m.parameters(recurse=False))
        if hasattr(m, "weight_tensors"):  # fused blocks list their own integer weights, biases and norms
            tensors += m.weight_tensors()
        elif type(m).__name__ in QUANT_MODULES:
            q = getattr(m, "weight_int8", None)
            if q is None:
                q = m.weight_q
                q = q if getattr(m, "bits", 8) == 8 else torch.cat([q, q], dim=-1)  # two int4 per byte
            tensors += [q] + ([m.bias] if getattr(m, "bias", None) is not None else [])
        for t in tensors:
            total += t.numel()
            nonzero += int(torch.count_nonzero(t.detach()))
    return total, nonzero


class _Int8Counts:
    """Parameters counted from the integer buffers; MACs with the int8 GEMM known to the FLOP counter."""

    def params(self) -> tuple[int, int]:
        return _count(self.model)

    def macs(self, prepared_one: Any) -> int | None:
        register_int8_gemm_macs()
        return super().macs(prepared_one)


class _QuantAdapter(_Int8Counts, TorchAdapter):
    kind = "torch-int8"


class _QuantEncoderAdapter(_Int8Counts, EncoderAdapter):
    kind = "torch-int8-encoder"


def _factory(model: Any):
    if not has_quant_modules(model):
        return None
    if hasattr(model, "logprobs") and hasattr(model, "generate"):
        return None  # a quantized causal LM is measured as a language model (slimstack.llm._measure)
    return _QuantEncoderAdapter(model) if hasattr(model, "encode") else _QuantAdapter(model)


register_adapter(_factory, priority=20)
