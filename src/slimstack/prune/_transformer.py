"""Structured pruning of Hugging Face transformers: whole attention heads and FFN neurons.

Torch-Pruning does not know a transformer's head layout, and transformers 5 dropped
``prune_heads``, so slimstack cuts the layers itself: removing head ``h`` drops rows
``h*d:(h+1)*d`` of the query, key and value projections and the same columns of the attention
output projection; removing an FFN neuron drops a row of the first FFN projection and a column of
the second. Residual widths (the hidden size) are untouched, so every layer stays consistent.
Which modules those are in each family (BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, ViT) comes
from :mod:`slimstack._arch`. Per-layer sizes of sentence encoders are saved by the
"pruned_encoder" format (see :mod:`._encoder_io`); other models by the module-tree format.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._arch import Stack, find_stack
from ._common import run_example
from ._importance import encoder_scores
from ._result import LayerRecord

__all__ = ["EncoderBackend", "keep_heads", "keep_neurons"]


def _sliced(old: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    w = old.weight.detach()
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=old.bias is not None, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if old.bias is not None:
            new.bias.copy_(old.bias.detach() if rows is None else old.bias.detach()[rows])
    return new


def _bert_stack() -> Stack:
    from .._arch import FAMILIES

    return Stack(FAMILIES["bert"], nn.Module(), "")


def keep_heads(layer: nn.Module, heads: list[int], stack: Stack | None = None) -> None:
    """Keep only ``heads`` (indices) of this layer's self-attention (``stack``: its family; default BERT)."""
    stack = stack or _bert_stack()
    d = stack.head_dim(layer)
    rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in sorted(heads)])
    for proj in ("q", "k", "v"):
        stack.put(layer, proj, _sliced(stack.get(layer, proj), rows=rows))
    stack.put(layer, "o", _sliced(stack.get(layer, "o"), cols=rows))
    stack.set_heads(layer, len(heads))


def keep_neurons(layer: nn.Module, neurons: list[int], stack: Stack | None = None) -> None:
    """Keep only ``neurons`` (indices) of this layer's feed-forward block (``stack``: its family; default BERT)."""
    stack = stack or _bert_stack()
    idx = torch.as_tensor(sorted(neurons))
    stack.put(layer, "fc1", _sliced(stack.get(layer, "fc1"), rows=idx))
    stack.put(layer, "fc2", _sliced(stack.get(layer, "fc2"), cols=idx))


def _top(scores: torch.Tensor, keep: int) -> list[int]:
    return torch.topk(scores, keep).indices.tolist()


class EncoderBackend:
    """Units: each layer's attention block (heads) and FFN (neurons), e.g. ``model.encoder.layer.{i}.attention``
    and ``model.encoder.layer.{i}.intermediate`` for a BERT sentence encoder (names from :mod:`slimstack._arch`)."""

    def __init__(self, model: nn.Module, config: Any, example: Any, data: Any):
        self.config = config
        self.stack = find_stack(model, required=True, what="StructuredPruning of a transformer")
        self.example = example
        self.reference_out = run_example(model, self.example)
        layers = self.stack.layers()
        self.layers = len(layers)
        self.head_scores, self.ffn_scores = encoder_scores(model, config.importance, data, seed=config.seed,
                                                           batches=config.taylor_batches, stack=self.stack)
        self.skipped: list[LayerRecord] = []
        self.units: dict[str, float] = {}
        self.index: dict[str, tuple[int, bool]] = {}  # unit name -> (layer index, is attention)
        overrides = config.layer_ratios or {}
        for i, layer in enumerate(layers):
            for kind, default, size, unit in (("attention", config.head_ratio, self.stack.heads(layer), "heads"),
                                              ("ffn", config.ratio, self.stack.ffn_width(layer), "neurons")):
                name = self.stack.unit(i, kind)
                self.index[name] = (i, kind == "attention")
                if any(name == n or name.startswith(n + ".") for n in config.ignore):
                    self.skipped.append(LayerRecord(name, "skipped", unit, size, size, "listed in ignore"))
                else:
                    self.units[name] = overrides.get(name, default)

    def _plan(self, ratios: dict[str, float]) -> dict[str, list[int]]:
        """Indices to keep per unit; global ranking normalises each layer's FFN scores by their mean."""
        plan: dict[str, list[int]] = {}
        rt = self.config.round_to or 1
        ffn_global = self.config.global_pruning and not self.config.layer_ratios and self.config.tolerance_rule is None
        if ffn_global:
            names = [n for n in ratios if not self.index[n][1]]
            normed = {n: self.ffn_scores[self.index[n][0]] / self.ffn_scores[self.index[n][0]].mean() for n in names}
            total = sum(len(s) for s in normed.values())
            if names:
                cut = torch.cat(list(normed.values())).sort().values[int(total * self.config.ratio)]
                for n, s in normed.items():
                    keep = max(rt, int((s >= cut).sum()) // rt * rt)
                    plan[n] = _top(s, min(keep, len(s)))
        for name, r in ratios.items():
            if name in plan or r <= 0:
                continue
            i, attention = self.index[name]
            if attention:
                s = self.head_scores[i]
                plan[name] = _top(s, max(1, len(s) - int(len(s) * r)))
            else:
                s = self.ffn_scores[i]
                keep = (len(s) - int(len(s) * r)) // rt * rt
                plan[name] = _top(s, keep) if keep > 0 else []
        return plan

    def apply(self, model: nn.Module, ratios: dict[str, float]) -> list[LayerRecord]:
        records = list(self.skipped)
        plan = self._plan(ratios)
        imp = self.config.importance
        stack = find_stack(model, required=True)  # ``model`` may be a copy of the one scored
        for name, r in ratios.items():
            i, heads = self.index[name]
            layer = stack.layers()[i]
            unit = "heads" if heads else "neurons"
            size = stack.heads(layer) if heads else stack.ffn_width(layer)
            keep = plan.get(name)
            if keep is None or len(keep) == size:
                records.append(LayerRecord(name, "skipped", unit, size, size, f"ratio {r:.2f} removes none"))
            elif not keep:
                records.append(LayerRecord(name, "skipped", unit, size, size,
                                           f"ratio {r:.2f} with round_to={self.config.round_to} would remove every "
                                           "neuron; kept whole"))
            else:
                (keep_heads if heads else keep_neurons)(layer, keep, stack)
                records.append(LayerRecord(name, "pruned", unit, size, len(keep),
                                           f"lowest-{imp} {size - len(keep)} of {size} {unit} removed"))
        return records
