"""N:M semi-structured pruning: keep the ``n`` largest of every ``m`` consecutive weights of a row."""

from __future__ import annotations

from typing import Any

import torch

from .._config import Request
from ._common import check_ignore, copy_model, count_params
from ._configs import NMPruning
from ._recovery import apply_masks, recover
from ._registry import HANDLERS, TorchHandler
from ._result import LayerRecord, PruneResult
from ._sparse_io import mark_sparse
from ._unstructured import prunable_weights

__all__ = ["NMHandler", "nm_mask", "is_nm"]


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask of ``weight`` (rows = output units) with ``n`` of every ``m`` consecutive inputs kept."""
    groups = weight.detach().abs().reshape(-1, m)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, torch.topk(groups, n, dim=1).indices, True)
    return mask.view_as(weight)


def is_nm(weight: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of ``m`` consecutive weights of each row has at most ``n`` nonzeros."""
    rows = weight.reshape(weight.shape[0], -1)
    if rows.shape[1] % m:
        return False
    return bool(((rows.reshape(-1, m) != 0).sum(1) <= n).all())


@HANDLERS.register(NMPruning)
class NMHandler(TorchHandler):
    """Keep ``n`` of every ``m`` consecutive input weights (``train`` feeds recovery)."""

    def run(self, model: Any, config: NMPruning, request: Request) -> PruneResult:
        return _prune_nm(model, config, request.train)


def _prune_nm(model: Any, config: NMPruning, data: Any) -> PruneResult:
    pruned = copy_model(model)
    check_ignore(pruned, config.ignore)
    layers, records = prunable_weights(pruned, config.ignore)
    masks, done = {}, []
    for name, mod in layers.items():
        w = mod.weight
        row = w[0].numel()
        if row % config.m:
            records.append(LayerRecord(name, "skipped", "weights", w.numel(), int(torch.count_nonzero(w)),
                                       f"a row holds {row} inputs, not a multiple of m={config.m}"))
            continue
        masks[f"{name}.weight"] = nm_mask(w, config.n, config.m)
        done.append(name)
    apply_masks(pruned, masks)
    history = recover(pruned, model, config, data, masks=masks)
    for name in done:
        w = layers[name].weight
        records.append(LayerRecord(name, "pruned", "weights", w.numel(), int(torch.count_nonzero(w)),
                                   f"kept the {config.n} largest |w| of every {config.m} consecutive inputs"))
    mark_sparse(pruned, f"{config.n}:{config.m}", [f"{n}.weight" for n in done], n=config.n, m=config.m)
    total, nonzero = count_params(pruned)
    summary = {"config": config.to_dict(), "params": total, "nonzero_params": nonzero, "recovery": history}
    return PruneResult(pruned.eval(), records, summary)
