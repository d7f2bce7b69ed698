"""Wanda and magnitude sparsity (unstructured or N:M) for causal LMs, and the handlers behind ``ss.prune``.

How to score is ``wanda_scores`` (``|W| * ||X||_2`` per input feature, from one calibration pass);
how to cut is ``row_masks`` (per output row, as Wanda compares weights within a row) or ``nm_mask``.
Only the Linear layers inside the decoder blocks are cut: the embedding is a lookup table (zeros save
no compute) and the LM head is usually the same tensor, so both stay dense and are recorded as skipped.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

from .._config import Handler, Request
from ..errors import ConfigError
from ._configs import MagnitudePruning, NMPruning
from ._lm_calib import as_causal_lm, calibration_windows, input_norms, linear_layers, rows_view
from ._lm_configs import WandaPruning
from ._lm_recovery import recover_lm
from ._nm import nm_mask
from ._registry import HANDLERS
from ._result import LayerRecord, PruneResult
from ._sparse_io import mark_sparse

__all__ = ["row_masks", "wanda_scores", "prune_lm_sparse", "is_causal_lm"]


def is_causal_lm(model: Any) -> str | None:
    """None when ``model`` is a CausalLM or a transformers causal LM, else why not."""
    try:
        as_causal_lm(model)
    except Exception as exc:  # noqa: BLE001 - the reason is the message
        return str(exc)
    return None


def wanda_scores(weight: torch.Tensor, norms: torch.Tensor | None) -> torch.Tensor:
    """``|W_ij| * ||X_j||`` for a (out, in) weight; ``norms=None`` gives plain ``|W|``."""
    score = weight.detach().abs().float()
    return score if norms is None else score * norms.float()[None, :]


def row_masks(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask zeroing the ``sparsity`` lowest scores of every row (at least one weight per row stays)."""
    rows, cols = score.shape
    drop = min(cols - 1, round(cols * sparsity))
    mask = torch.ones_like(score, dtype=torch.bool)
    if drop > 0:
        mask.scatter_(1, torch.topk(score, drop, dim=1, largest=False).indices, False)
    return mask


def _decoder_prefix(model: torch.nn.Module) -> str:
    from ..llm import decoder_layers

    return decoder_layers(model)[0] + "."


def prune_lm_sparse(model: Any, config: WandaPruning, calibration: Any, train: Any = None) -> PruneResult:
    lm = as_causal_lm(model)
    pruned = copy.deepcopy(lm)
    inner = pruned.model
    prefix = _decoder_prefix(inner)
    layers = linear_layers(inner)
    targets = {n: m for n, m in layers.items() if n.startswith(prefix)}
    records = [LayerRecord(n, "skipped", "weights", m.weight.numel(), int(torch.count_nonzero(m.weight)),
                           _skip_reason(inner, m)) for n, m in layers.items() if n not in targets]
    emb = inner.get_input_embeddings()
    records.append(LayerRecord(_name_of(inner, emb), "skipped", "weights", emb.weight.numel(),
                               int(torch.count_nonzero(emb.weight)),
                               "input embedding: a lookup table, zeros there save no compute (and it is often "
                               "tied to the LM head)"))
    windows = None
    norms: dict[str, torch.Tensor] = {}
    if config.importance == "wanda" or config.recovery != "none":
        windows = calibration_windows(lm, calibration, config.calibration_windows, config.calibration_tokens)
    if config.importance == "wanda":
        norms = input_norms(pruned, targets, windows)
    masks: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, mod in targets.items():
            w = rows_view(mod)
            score = wanda_scores(w, norms.get(name))
            if config.nm is not None:
                n, m = config.nm
                if w.shape[1] % m:
                    records.append(LayerRecord(name, "skipped", "weights", w.numel(), int(torch.count_nonzero(w)),
                                               f"a row holds {w.shape[1]} inputs, not a multiple of m={m}"))
                    continue
                mask = nm_mask(score, n, m)
            else:
                mask = row_masks(score, config.sparsity)
            mask = mask if isinstance(mod, torch.nn.Linear) else mask.T
            mod.weight.mul_(mask.to(mod.weight.dtype))
            masks[f"{name}.weight"] = mask.to(mod.weight.dtype)
    history = recover_lm(pruned, lm, windows or [], config, masks=masks, train=train)
    how = (f"kept the {config.nm[0]} best of every {config.nm[1]} inputs" if config.nm
           else f"dropped the {config.sparsity:.0%} lowest-scored weights of every output row")
    by = "|W| * ||X||_2 (Wanda)" if config.importance == "wanda" else "|W|"
    for name in masks:
        w = inner.get_submodule(name[: -len(".weight")]).weight
        nz = int(torch.count_nonzero(w))
        records.append(LayerRecord(name[: -len(".weight")], "pruned", "weights", w.numel(), nz, f"{how} by {by}",
                                   {"sparsity": round(1 - nz / w.numel(), 4)}))
    method = f"{config.nm[0]}:{config.nm[1]}" if config.nm else config.importance
    info = {"n": config.nm[0], "m": config.nm[1]} if config.nm else {}
    mark_sparse(pruned, method, [f"model.{k}" for k in masks], **info)
    total = sum(p.numel() for p in inner.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in inner.parameters())
    n_target = sum(int(m.numel()) for m in masks.values())
    nz_target = sum(int(m.sum()) for m in masks.values())
    summary = {"config": config.to_dict(), "params": total, "nonzero_params": nonzero,
               "sparsity_of_pruned_layers": round(1 - nz_target / max(1, n_target), 4),
               "calibration_windows": len(windows or []), "recovery": history}
    out = pruned if model is lm else pruned.model
    return PruneResult(out, records, summary)


def _name_of(root: torch.nn.Module, module: torch.nn.Module) -> str:
    return next((n for n, m in root.named_modules() if m is module), type(module).__name__)


def _skip_reason(inner: torch.nn.Module, mod: torch.nn.Module) -> str:
    head = inner.get_output_embeddings()
    if mod is head:
        tied = head.weight is inner.get_input_embeddings().weight
        return ("LM head, tied to the input embedding: left dense so the shared tensor stays whole"
                if tied else "LM head: left dense (the output layer is the most sensitive to pruning)")
    return "outside the decoder layers"


def _lm_recovery(config: Any) -> str:
    return {"none": "none", "finetune": "lm", "distill": "distill"}[config.recovery]


class _LMHandler(Handler):
    backends = ("torch",)

    def applies_to(self, model: Any) -> str | None:
        return is_causal_lm(model)


def refuse_unused(config: Any, used: tuple[str, ...], instead: str) -> None:
    """A general config run on a causal LM: a field set away from its default that the LM path ignores is an error."""
    unused = [f.name for f in dataclasses.fields(config) if f.name not in used
              and getattr(config, f.name) != (f.default if f.default is not dataclasses.MISSING else f.default_factory())]
    if unused:
        shown = ", ".join(f"{n}={getattr(config, n)!r}" for n in unused)
        raise ConfigError(f"{type(config).__name__} on a causal LM uses only {', '.join(used)}; {shown} would be "
                          f"ignored. Leave {'it' if len(unused) == 1 else 'them'} at the default, or use {instead}.")


@HANDLERS.register(WandaPruning)
class WandaHandler(_LMHandler):
    def run(self, model: Any, config: WandaPruning, request: Request) -> PruneResult:
        return prune_lm_sparse(model, config, request.calibration, request.train)


@HANDLERS.register(MagnitudePruning)
class LMMagnitudeHandler(_LMHandler):
    """MagnitudePruning on a causal LM: |W| per row of the decoder Linears, embeddings and head left dense."""

    def run(self, model: Any, config: MagnitudePruning, request: Request) -> PruneResult:
        if config.schedule != "oneshot":
            raise ConfigError("MagnitudePruning(schedule='iterative') is not supported for causal LMs; use "
                              "schedule='oneshot' with recovery='finetune' or 'distill'")
        refuse_unused(config, ("sparsity", "schedule", "recovery", "recovery_steps", "seed"),
                      "ss.WandaPruning(importance='magnitude') for the LM options")
        cfg = WandaPruning(sparsity=config.sparsity, importance="magnitude", recovery=_lm_recovery(config),
                           recovery_steps=config.recovery_steps, seed=config.seed)
        result = prune_lm_sparse(model, cfg, request.calibration, request.train)
        result.summary["config"] = config.to_dict()
        return result


@HANDLERS.register(NMPruning)
class LMNMHandler(_LMHandler):
    """NMPruning on a causal LM: N:M by |W| on the decoder Linears; tied embeddings and head left dense."""

    def run(self, model: Any, config: NMPruning, request: Request) -> PruneResult:
        refuse_unused(config, ("n", "m", "recovery", "recovery_steps", "seed"),
                      "ss.WandaPruning(nm=(n, m), importance='magnitude') for the LM options")
        cfg = WandaPruning(nm=(config.n, config.m), importance="magnitude", recovery=_lm_recovery(config),
                           recovery_steps=config.recovery_steps, seed=config.seed)
        result = prune_lm_sparse(model, cfg, request.calibration, request.train)
        result.summary["config"] = config.to_dict()
        return result
