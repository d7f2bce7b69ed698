"""Swap float layers of a copied model for slimstack's integer modules, following a :class:`Scheme`."""

from __future__ import annotations

from typing import Any

from torch import nn

from ...._utils import seed_everything
from ....errors import DataError
from ..._calibration import collect, qparams, seen_rows
from ..._scheme import Scheme
from ..._smoothquant import smooth_factors
from ._modules import MixedEmbedding, QuantConv2d, QuantLinear, WeightOnlyEmbedding, WeightOnlyLinear
from ._transformer import BERT_LINEARS, QuantBertLayer, fusable_layers, fused_available

__all__ = ["candidate_layers", "set_module", "build_torch"]


def candidate_layers(model: nn.Module, scheme: Scheme) -> tuple[list[str], list[dict[str, Any]]]:
    """Layers this scheme can quantize, and records for parameterised layers it cannot (kept float, with why)."""
    quantizable: list[str] = []
    other: list[dict[str, Any]] = []
    for name, m in model.named_modules():
        if not name:
            continue
        t = type(m).__name__
        if scheme.weight_only:
            if isinstance(m, nn.Linear):
                if m.in_features % scheme.group_size:
                    fits = [g for g in (32, 64, 128, 256) if m.in_features % g == 0]
                    other.append(_float(name, t, f"in_features={m.in_features} is not divisible by group_size="
                                        f"{scheme.group_size}; group sizes that fit: {fits or 'none'}"))
                else:
                    quantizable.append(name)
            elif isinstance(m, nn.Embedding):
                if m.embedding_dim % scheme.group_size:
                    other.append(_float(name, t, f"embedding_dim={m.embedding_dim} is not divisible by "
                                        f"group_size={scheme.group_size}"))
                else:
                    quantizable.append(name)
            elif _has_own_params(m):
                other.append(_float(name, t, f"weight-only quantization covers Linear and Embedding, not {t}"))
        elif (isinstance(m, nn.Linear | nn.Embedding)
              or (isinstance(m, nn.Conv2d) and scheme.activations != "dynamic")):
            quantizable.append(name)
        elif _has_own_params(m):
            why = ("dynamic int8 needs run-time ranges, which the torch backend offers for Linear only; "
                   "use StaticInt8 for Conv2d") if isinstance(m, nn.Conv2d) else f"no int8 kernel for {t}"
            other.append(_float(name, t, why))
    skip = [n for n in quantizable if any(s == n or s in n for s in scheme.skip)]
    for n in skip:
        quantizable.remove(n)
        other.append(_float(n, type(model.get_submodule(n)).__name__, "listed in config.skip"))
    return quantizable, other


def _has_own_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def _float(name: str, type_name: str, reason: str) -> dict[str, Any]:
    return {"name": name, "type": type_name, "status": "float", "reason": reason}


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def build_torch(model: nn.Module, scheme: Scheme, layers: list[str], calibration: Any = None,
                seed: int = 0) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Return a quantized copy-in-place of ``model`` (the caller passes a copy) and one record per layer."""
    seed_everything(seed)
    model.eval()
    modules = dict(model.named_modules())
    records: list[dict[str, Any]] = []
    act: dict[str, tuple[float, int]] = {}
    smooth: dict[str, Any] = {}
    observed = [n for n in layers if isinstance(modules[n], nn.Linear | nn.Conv2d)]
    if scheme.static and observed:
        stats = collect(model, observed, calibration, seed=seed)
        if scheme.smoothquant_alpha > 0:
            smooth = {n: smooth_factors(modules[n], stats[n].channel_absmax, scheme.smoothquant_alpha)
                      for n in observed if isinstance(modules[n], nn.Linear)}
            stats = collect(model, observed, calibration, seed=seed, transform=smooth)
        act = {n: qparams(stats[n], scheme.observer, scheme.percentile) for n in observed}
    per_channel = scheme.per_channel
    hot: dict[str, Any] = {}
    if scheme.embedding_bits == "mixed":
        tables = [n for n in layers if isinstance(modules[n], nn.Embedding)]
        if tables and calibration is None:
            raise DataError("embedding_bits='mixed' keeps in int8 the embedding rows your calibration data looks up; "
                            "pass calibration= (e.g. a few thousand training sentences) or use embedding_bits=8")
        hot = seen_rows(model, tables, calibration) if tables else {}
    fused: set[str] = set()
    if not scheme.weight_only and scheme.fuse_layers and fused_available():
        for block in fusable_layers(model, layers):
            full = {k: f"{block}.{p}" for k, p in BERT_LINEARS.items()}
            new = QuantBertLayer.from_float(
                modules[block], act_qparams={k: act[n] for k, n in full.items()} if act else None,
                smooth={k: smooth[n] for k, n in full.items() if n in smooth}, per_channel=per_channel)
            set_module(model, block, new)
            records += [_quantized(n, "Linear", f"QuantBertLayer({block})", new.kernel, act, smooth)
                        for n in full.values()]
            fused.update(full.values())
    for n in layers:
        if n in fused:
            continue
        m = modules[n]
        if scheme.weight_only:
            cls = WeightOnlyLinear if isinstance(m, nn.Linear) else WeightOnlyEmbedding
            new = cls.from_float(m, scheme.weight_bits, scheme.group_size)
        elif isinstance(m, nn.Embedding) and n in hot and m.embedding_dim % 32 == 0:
            new = MixedEmbedding.from_float(m, hot[n], 32)
        elif isinstance(m, nn.Embedding):  # a lookup has no matmul to run in int8: store int8 rows, one scale each
            group = next((g for g in (32, 64, 128, 256) if m.embedding_dim % g == 0), None)
            bits = 4 if scheme.embedding_bits == 4 and group else 8
            new = WeightOnlyEmbedding.from_float(m, bits, group if bits == 4 else m.embedding_dim)
        elif isinstance(m, nn.Conv2d):
            new = QuantConv2d.from_float(m, act[n], per_channel)
        else:
            new = QuantLinear.from_float(m, per_channel=per_channel, act_qparams=act.get(n), smooth=smooth.get(n))
        set_module(model, n, new)
        rec = _quantized(n, type(m).__name__, type(new).__name__, getattr(new, "kernel", "dequantize"), act, smooth)
        if isinstance(new, MixedEmbedding):
            rec["bits"] = "mixed"
            rec["int8_rows"], rec["int4_rows"] = new.n_hot, new.num_embeddings - new.n_hot
        elif isinstance(new, WeightOnlyEmbedding):
            rec["bits"] = new.bits
            if not scheme.weight_only and scheme.embedding_bits == 4 and new.bits != 4:
                rec["reason"] = f"embedding_dim={m.embedding_dim} is not divisible by 32, so int4 groups do not fit"
        records.append(rec)
    return model, records


def _quantized(name: str, type_name: str, as_name: str, kernel: str, act: dict[str, Any],
               smooth: dict[str, Any]) -> dict[str, Any]:
    """The record of one quantized layer, with its activation range and SmoothQuant flag if any."""
    rec = {"name": name, "type": type_name, "status": "quantized", "as": as_name, "kernel": kernel}
    if name in act:
        rec["act_scale"], rec["act_zero_point"] = act[name]
    if name in smooth:
        rec["smoothquant"] = True
    return rec
