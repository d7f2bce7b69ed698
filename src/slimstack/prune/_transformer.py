"""Structured pruning of Hugging Face BERT encoders: whole attention heads and FFN neurons.

Torch-Pruning does not know BERT's head layout, and transformers 5 dropped ``prune_heads``, so
slimstack cuts the layers itself: removing head ``h`` drops rows ``h*d:(h+1)*d`` of the query,
key and value projections and the same columns of the attention output projection; removing an
FFN neuron drops a row of the intermediate projection and a column of the output projection.
Residual widths (the hidden size) are untouched, so every layer stays consistent. Per-layer sizes
are saved by the "pruned_encoder" format (see :mod:`._encoder_io`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._common import example_inputs_for, run_example
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


def keep_heads(layer: nn.Module, heads: list[int]) -> None:
    """Keep only ``heads`` (indices) of this BERT layer's self-attention."""
    att = layer.attention.self
    d = att.attention_head_size
    rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in sorted(heads)])
    for proj in ("query", "key", "value"):
        setattr(att, proj, _sliced(getattr(att, proj), rows=rows))
    att.num_attention_heads, att.all_head_size = len(heads), len(heads) * d
    layer.attention.output.dense = _sliced(layer.attention.output.dense, cols=rows)


def keep_neurons(layer: nn.Module, neurons: list[int]) -> None:
    """Keep only ``neurons`` (indices) of this BERT layer's feed-forward block."""
    idx = torch.as_tensor(sorted(neurons))
    layer.intermediate.dense = _sliced(layer.intermediate.dense, rows=idx)
    layer.output.dense = _sliced(layer.output.dense, cols=idx)


def _top(scores: torch.Tensor, keep: int) -> list[int]:
    return torch.topk(scores, keep).indices.tolist()


class EncoderBackend:
    """Units: ``model.encoder.layer.{i}.attention`` (heads) and ``model.encoder.layer.{i}.intermediate`` (FFN)."""

    def __init__(self, model: nn.Module, config: Any, example_inputs: Any, data: Any):
        self.config = config
        self.example = example_inputs_for(model, example_inputs, data)
        self.reference_out = run_example(model, self.example)
        self.layers = len(model.model.encoder.layer)
        self.head_scores, self.ffn_scores = encoder_scores(model, config.importance, data, seed=config.seed,
                                                           batches=config.taylor_batches)
        self.skipped: list[LayerRecord] = []
        self.units: dict[str, float] = {}
        overrides = config.layer_ratios or {}
        for i, layer in enumerate(model.model.encoder.layer):
            for kind, default, size, unit in (("attention", config.head_ratio, layer.attention.self.num_attention_heads, "heads"),
                                              ("intermediate", config.ratio, layer.intermediate.dense.out_features, "neurons")):
                name = f"model.encoder.layer.{i}.{kind}"
                if any(name == n or name.startswith(n + ".") for n in config.ignore):
                    self.skipped.append(LayerRecord(name, "skipped", unit, size, size, "listed in ignore"))
                else:
                    self.units[name] = overrides.get(name, default)

    def evaluate(self, model: nn.Module, data: Any) -> float:
        from ._eval import quality

        return quality(model, data)

    def _plan(self, ratios: dict[str, float]) -> dict[str, list[int]]:
        """Indices to keep per unit; global ranking normalises each layer's FFN scores by their mean."""
        plan: dict[str, list[int]] = {}
        rt = self.config.round_to or 1
        ffn_global = self.config.global_pruning and not self.config.layer_ratios and self.config.tolerance is None
        if ffn_global:
            names = [n for n in ratios if n.endswith("intermediate")]
            normed = {n: self.ffn_scores[int(n.split(".")[3])] / self.ffn_scores[int(n.split(".")[3])].mean() for n in names}
            total = sum(len(s) for s in normed.values())
            if names:
                cut = torch.cat(list(normed.values())).sort().values[int(total * self.config.ratio)]
                for n, s in normed.items():
                    keep = max(rt, int((s >= cut).sum()) // rt * rt)
                    plan[n] = _top(s, min(keep, len(s)))
        for name, r in ratios.items():
            if name in plan or r <= 0:
                continue
            i = int(name.split(".")[3])
            if name.endswith("attention"):
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
        for name, r in ratios.items():
            i = int(name.split(".")[3])
            layer = model.model.encoder.layer[i]
            heads = name.endswith("attention")
            unit = "heads" if heads else "neurons"
            size = layer.attention.self.num_attention_heads if heads else layer.intermediate.dense.out_features
            keep = plan.get(name)
            if keep is None or len(keep) == size:
                records.append(LayerRecord(name, "skipped", unit, size, size, f"ratio {r:.2f} removes none"))
            elif not keep:
                records.append(LayerRecord(name, "skipped", unit, size, size,
                                           f"ratio {r:.2f} with round_to={self.config.round_to} would remove every "
                                           "neuron; kept whole"))
            else:
                (keep_heads if heads else keep_neurons)(layer, keep)
                records.append(LayerRecord(name, "pruned", unit, size, len(keep),
                                           f"lowest-{imp} {size - len(keep)} of {size} {unit} removed"))
        return records
