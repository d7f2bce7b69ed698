"""Unstructured magnitude pruning: zero the smallest weights, per layer or globally, once or iteratively."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._config import Request

from ._common import check_ignore, copy_model, count_params, is_torch_encoder, weight_layers
from ._configs import MagnitudePruning
from ._recovery import apply_masks, recover
from ._registry import HANDLERS, TorchHandler
from ._result import LayerRecord, PruneResult
from ._sparse_io import mark_sparse

__all__ = ["MagnitudeHandler", "magnitude_masks", "polynomial_schedule", "prunable_weights"]


def polynomial_schedule(final: float, steps: int) -> list[float]:
    """Sparsity after each step: ``s_t = s_f (1 - (1 - t/n)^3)`` (Zhu and Gupta 2017); prunes fast, then gently."""
    return [final * (1 - (1 - t / steps) ** 3) for t in range(1, steps + 1)]


def _keep_top(score: torch.Tensor, keep: int) -> torch.Tensor:
    mask = torch.zeros(score.numel(), dtype=torch.bool)
    if keep > 0:
        mask[torch.topk(score.flatten(), keep, sorted=False).indices] = True
    return mask.view_as(score)


def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Boolean keep-masks zeroing ``sparsity`` of the weights by |w|; every layer keeps at least one weight."""
    if scope == "layer":
        return {n: _keep_top(w.abs(), max(1, round(w.numel() * (1 - sparsity)))) for n, w in weights.items()}
    scores = torch.cat([w.abs().flatten() for w in weights.values()])
    keep = max(1, round(scores.numel() * (1 - sparsity)))
    threshold = torch.topk(scores, keep, sorted=False).values.min()
    masks = {}
    for n, w in weights.items():
        mask = w.abs() >= threshold
        if not mask.any():  # a layer emptied by the global threshold would cut the network in two
            mask = _keep_top(w.abs(), 1)
        masks[n] = mask
    return masks


def prunable_weights(model: nn.Module, ignore: tuple[str, ...]) -> tuple[dict[str, nn.Module], list[LayerRecord]]:
    """Linear/Conv layers to sparsify; encoders keep their embeddings (lookup tables, not matmuls)."""
    layers, skipped = {}, []
    encoder = is_torch_encoder(model)
    root = model.model if encoder else model
    prefix = "model." if encoder else ""
    for name, mod in weight_layers(root):
        full = prefix + name
        if any(full == i or full.startswith(i + ".") for i in ignore):
            skipped.append(LayerRecord(full, "skipped", "weights", mod.weight.numel(), mod.weight.numel(),
                                       "listed in ignore"))
        else:
            layers[full] = mod
    return layers, skipped


@HANDLERS.register(MagnitudePruning)
class MagnitudeHandler(TorchHandler):
    """Zero the smallest |w| of every Linear/Conv (``train`` feeds recovery between iterative steps)."""

    def run(self, model: Any, config: MagnitudePruning, request: Request) -> PruneResult:
        return _prune_magnitude(model, config, request.train)


def _prune_magnitude(model: nn.Module, config: MagnitudePruning, data: Any) -> PruneResult:
    teacher = model
    pruned = copy_model(model)
    check_ignore(pruned, config.ignore)
    layers, skipped = prunable_weights(pruned, config.ignore)
    params_before = count_params(pruned)
    targets = polynomial_schedule(config.sparsity, config.steps) if config.schedule == "iterative" else [config.sparsity]
    history = []
    masks: dict[str, torch.Tensor] = {}
    for step, target in enumerate(targets, start=1):
        weights = {n: m.weight.detach() for n, m in layers.items()}
        masks = {f"{n}.weight": mk for n, mk in magnitude_masks(weights, target, config.scope).items()}
        apply_masks(pruned, masks)
        history.append({"step": step, "sparsity": round(target, 4),
                        **recover(pruned, teacher, config, data, masks=masks)})
    records = []
    for name, mod in layers.items():
        n, nz = mod.weight.numel(), int(torch.count_nonzero(mod.weight))
        why = (f"smallest |w| zeroed to reach {config.sparsity:.0%} "
               f"{'of all weights (global threshold)' if config.scope == 'global' else 'in this layer'}")
        records.append(LayerRecord(name, "pruned", "weights", n, nz, why, {"sparsity": round(1 - nz / n, 4)}))
    mark_sparse(pruned, "magnitude", [f"{n}.weight" for n in layers])
    total, nonzero = count_params(pruned)
    summary = {"config": config.to_dict(), "params": total, "nonzero_params_before": params_before[1],
               "nonzero_params": nonzero, "sparsity_of_pruned_layers": _sparsity(layers), "steps": history}
    return PruneResult(pruned.eval(), records + skipped, summary)


def _sparsity(layers: dict[str, nn.Module]) -> float:
    n = sum(m.weight.numel() for m in layers.values())
    nz = sum(int(torch.count_nonzero(m.weight)) for m in layers.values())
    return round(1 - nz / max(1, n), 4)
