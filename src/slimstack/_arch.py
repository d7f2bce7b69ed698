"""Where each transformer family keeps its layers, attention projections, FFN and LayerNorms.

Structured pruning (heads and FFN neurons), ``ss.zoo.shrink(layers=k)``, the pruned-encoder save
format and the fused int8 layer all need to find the same pieces of a Hugging Face model, and
each family names them differently (BERT's ``encoder.layer.i.attention.self.query`` is
DistilBERT's ``transformer.layer.i.attention.q_lin`` and ViT's ``layers.i.attention.q_proj``).
This module is the one place that knows those names; everything else asks :func:`find_stack`.

The families covered: ``bert``, ``roberta``, ``xlm-roberta``, ``electra``, ``camembert``
(BERT layout), ``distilbert`` and ``vit``. Every family's attention reshapes with ``-1`` heads,
so cutting whole heads from Q/K/V/O and updating the head-count attributes keeps it consistent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .errors import ModelError

__all__ = ["Family", "FAMILIES", "Stack", "find_stack", "transformer_model_type", "supported_families", "get_path",
           "is_encoder", "is_causal_lm"]


def get_path(m: Any, path: str) -> Any:
    """``m.a.b.c`` for ``path='a.b.c'``, or None when any step is missing."""
    for part in path.split(".") if path else ():
        m = getattr(m, part, None)
        if m is None:
            return None
    return m


def _set_path(m: Any, path: str, value: Any) -> None:
    parent, _, last = path.rpartition(".")
    setattr(get_path(m, parent) if parent else m, last, value)


@dataclasses.dataclass(frozen=True)
class Family:
    """Relative names inside one family's base model and its layers."""

    name: str
    layers: str  # the nn.ModuleList of layers, from the base model
    attention: str  # the layer's attention block (the unit named in records and layer_ratios)
    ffn: str  # the layer's feed-forward unit
    heads_at: str  # module holding the head-count attributes
    heads_attrs: tuple[str, ...]  # attributes equal to the head count
    width_attrs: tuple[str, ...]  # attributes equal to heads x head size
    head_dim_attr: str
    q: str
    k: str
    v: str
    o: str
    fc1: str
    fc2: str
    ln1: str
    ln2: str
    act: str
    post_norm: bool  # LayerNorm after each residual add (BERT) rather than before (ViT)
    config_heads: str = "num_attention_heads"
    config_ffn: str = "intermediate_size"


_BERT = dict(layers="encoder.layer", attention="attention", ffn="intermediate", heads_at="attention.self",
             heads_attrs=("num_attention_heads",), width_attrs=("all_head_size",), head_dim_attr="attention_head_size",
             q="attention.self.query", k="attention.self.key", v="attention.self.value", o="attention.output.dense",
             fc1="intermediate.dense", fc2="output.dense", ln1="attention.output.LayerNorm", ln2="output.LayerNorm",
             act="intermediate.intermediate_act_fn", post_norm=True)

FAMILIES: dict[str, Family] = {
    **{name: Family(name=name, **_BERT) for name in ("bert", "roberta", "xlm-roberta", "electra", "camembert")},
    "distilbert": Family(name="distilbert", layers="transformer.layer", attention="attention", ffn="ffn",
                         heads_at="attention", heads_attrs=("n_heads",), width_attrs=("dim",),
                         head_dim_attr="attention_head_size", q="attention.q_lin", k="attention.k_lin",
                         v="attention.v_lin", o="attention.out_lin", fc1="ffn.lin1", fc2="ffn.lin2",
                         ln1="sa_layer_norm", ln2="output_layer_norm", act="ffn.activation", post_norm=True,
                         config_ffn="hidden_dim"),
    "vit": Family(name="vit", layers="layers", attention="attention", ffn="mlp", heads_at="attention",
                  heads_attrs=("num_attention_heads",), width_attrs=(), head_dim_attr="head_dim",
                  q="attention.q_proj", k="attention.k_proj", v="attention.v_proj", o="attention.o_proj",
                  fc1="mlp.fc1", fc2="mlp.fc2", ln1="layernorm_before", ln2="layernorm_after",
                  act="mlp.activation_fn", post_norm=False),
}


def supported_families() -> str:
    return ", ".join(sorted(FAMILIES))


def transformer_model_type(m: nn.Module) -> str | None:
    """``config.model_type`` of a Hugging Face model, else None."""
    cfg = getattr(m, "config", None)
    kind = getattr(cfg, "model_type", None)
    return kind if isinstance(kind, str) and hasattr(m, "base_model") else None


@dataclasses.dataclass
class Stack:
    """One transformer stack inside a model: its family, its base model and where that sits."""

    family: Family
    base: nn.Module  # the Hugging Face base model (BertModel, DistilBertModel, ViTModel, ...)
    prefix: str  # dotted name of ``base`` inside the model searched ('' when the model is it)

    @property
    def layers_name(self) -> str:
        return f"{self.prefix}.{self.family.layers}" if self.prefix else self.family.layers

    def layers(self) -> nn.ModuleList:
        return get_path(self.base, self.family.layers)

    def set_layers(self, layers: nn.ModuleList) -> None:
        _set_path(self.base, self.family.layers, layers)

    def unit(self, i: int, kind: str) -> str:
        """Record name of layer ``i``'s ``kind`` unit ('attention' or 'ffn')."""
        return f"{self.layers_name}.{i}.{self.family.attention if kind == 'attention' else self.family.ffn}"

    def get(self, layer: nn.Module, role: str) -> Any:
        return get_path(layer, getattr(self.family, role))

    def put(self, layer: nn.Module, role: str, module: nn.Module) -> None:
        _set_path(layer, getattr(self.family, role), module)

    def heads(self, layer: nn.Module) -> int:
        return int(getattr(get_path(layer, self.family.heads_at), self.family.heads_attrs[0]))

    def head_dim(self, layer: nn.Module) -> int:
        return int(getattr(get_path(layer, self.family.heads_at), self.family.head_dim_attr))

    def set_heads(self, layer: nn.Module, heads: int) -> None:
        att = get_path(layer, self.family.heads_at)
        for a in self.family.heads_attrs:
            setattr(att, a, heads)
        for a in self.family.width_attrs:
            setattr(att, a, heads * self.head_dim(layer))

    def ffn_width(self, layer: nn.Module) -> int:
        return int(self.get(layer, "fc1").out_features)

    def config_sizes(self) -> tuple[int, int]:
        cfg = self.base.config
        return int(getattr(cfg, self.family.config_heads)), int(getattr(cfg, self.family.config_ffn))


def find_stack(model: nn.Module, *, required: bool = False, what: str = "this") -> Stack | None:
    """The supported transformer stack inside ``model`` (a SentenceEncoder, a HF model or a wrapper).

    Returns None when ``model`` holds no Hugging Face model; raises :class:`ModelError` when it holds
    one of a family not listed in :data:`FAMILIES` (or ``required`` and none was found), naming
    what is supported, because treating attention as plain Linear layers would break its heads.
    """
    found: list[tuple[str, nn.Module, str]] = []
    for name, m in model.named_modules():
        kind = transformer_model_type(m)
        if kind is None or any(name.startswith(f + ".") or (f == "" and name) for f, _, _ in found):
            continue
        found.append((name, m, kind))
    if not found:
        if required:
            raise ModelError(f"{what} needs a Hugging Face transformer of a supported family ({supported_families()}); "
                             f"got a {type(model).__name__}")
        return None
    name, hf, kind = found[0]
    family = FAMILIES.get(kind)
    if family is None:
        raise ModelError(f"{what} does not know the layout of transformer model_type {kind!r} "
                         f"({type(hf).__name__}); supported: {supported_families()}. Use MagnitudePruning or "
                         "NMPruning, which need no layout")
    base = hf.base_model
    base_name = next((n for n, m in hf.named_modules() if m is base), "")
    prefix = ".".join(p for p in (name, base_name) if p)
    if not isinstance(get_path(base, family.layers), nn.ModuleList):
        raise ModelError(f"{type(base).__name__} (model_type {kind!r}) has no layer list at {family.layers!r}; this "
                         "transformers version lays it out differently from the one slimstack supports")
    return Stack(family, base, prefix)


def is_encoder(model: Any) -> bool:
    """A sentence encoder slimstack can feed text: it has ``encode`` and ``tokenize`` (torch or ONNX)."""
    return hasattr(model, "encode") and hasattr(model, "tokenize")


def is_causal_lm(model: Any) -> bool:
    """A slimstack :class:`~slimstack.llm.CausalLM` (any backend): it has ``logprobs`` and ``generate``."""
    return hasattr(model, "logprobs") and hasattr(model, "generate") and hasattr(model, "perplexity")
