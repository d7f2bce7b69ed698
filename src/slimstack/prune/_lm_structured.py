"""Structured pruning of causal LMs: drop whole decoder layers, or cut FFN neurons and attention heads.

Both give a plain dense transformers model of the same family with its config updated
(``num_hidden_layers``; ``intermediate_size``, ``num_attention_heads``, ``num_key_value_heads``,
``head_dim``), so it saves, loads and generates as the original did. Scores come from one calibration
pass (``_lm_calib``); cuts are the same count in every layer because the config is one for all layers.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .._config import Request
from ..errors import ConfigError, ModelError
from ._configs import StructuredPruning
from ._lm_calib import as_causal_lm, block_importance, calibration_windows, input_norms
from ._lm_configs import LayerDrop, WidthPruning
from ._lm_recovery import recover_lm
from ._lm_refit import input_hessians, refit_columns
from ._lm_sparse import _LMHandler, refuse_unused
from ._registry import HANDLERS
from ._result import LayerRecord, PruneResult

__all__ = ["drop_layers", "prune_width"]


def _result_model(model: Any, lm: Any, pruned: Any) -> Any:
    return pruned if model is lm else pruned.model


def drop_layers(model: Any, config: LayerDrop, calibration: Any, train: Any = None) -> PruneResult:
    from ..llm import decoder_layers, shrink_lm

    lm = as_causal_lm(model)
    path, blocks = decoder_layers(lm.model)
    n = len(blocks)
    if config.layers >= n:
        raise ConfigError(f"layers={config.layers} would remove all {n} decoder layers; pass layers <= {n - 1}")
    windows = calibration_windows(lm, calibration, config.calibration_windows, config.calibration_tokens)
    scores = block_importance(lm, windows, config.importance)
    order = sorted(range(n), key=lambda i: (scores[i], i))
    dropped = sorted(order[: config.layers])
    keep = [i for i in range(n) if i not in dropped]
    pruned = shrink_lm(lm, keep)
    pruned.name = f"{lm.name} ({len(keep)} of {n} layers)"
    near = sorted({j for j, i in enumerate(keep) if i - 1 in dropped or i + 1 in dropped})
    history = recover_lm(pruned, lm, windows, config, train=train, near=near)
    metric = "1 - cos(in, out)" if config.importance == "cosine" else "KLD when skipped"
    records = [LayerRecord(f"{path}.{i}", "pruned" if i in dropped else "skipped", "layers", 1,
                           0 if i in dropped else 1,
                           f"{metric} = {scores[i]:.4g}, " + ("among the lowest" if i in dropped else "kept"),
                           {"importance": round(scores[i], 6)}) for i in range(n)]
    summary = {"config": config.to_dict(), "layers_before": n, "layers": len(keep), "dropped_layers": dropped,
               "kept_layers": keep, "importance": [round(s, 6) for s in scores], "recovery": history,
               "params_before": _params(lm), "params": _params(pruned)}
    return PruneResult(_result_model(model, lm, pruned), records, summary)


def _params(lm: Any) -> int:
    return sum(p.numel() for p in lm.model.parameters())


def _linear(old: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    w = old.weight.data
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    new = nn.Linear(w.shape[1], w.shape[0], bias=old.bias is not None, dtype=w.dtype)
    new.weight.data.copy_(w)
    if old.bias is not None:
        new.bias.data.copy_(old.bias.data[rows] if rows is not None else old.bias.data)
    return new


def _keep(score: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(score, k).indices).values


def _llama_like(blocks: nn.ModuleList) -> bool:
    b = blocks[0]
    return all(hasattr(b, "mlp") and hasattr(b.mlp, a) for a in ("gate_proj", "up_proj", "down_proj")) and \
        all(hasattr(b, "self_attn") and hasattr(b.self_attn, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj"))


def prune_width(model: Any, config: WidthPruning, calibration: Any, train: Any = None) -> PruneResult:
    from ..llm import decoder_layers

    lm = as_causal_lm(model)
    pruned = copy.deepcopy(lm)
    inner, cfg = pruned.model, pruned.model.config
    path, blocks = decoder_layers(inner)
    if not _llama_like(blocks):
        raise ModelError(f"WidthPruning cuts Llama-family blocks (gate/up/down and q/k/v/o projections: Llama, "
                         f"Qwen2, Mistral, SmolLM); a {type(inner).__name__} has none; use ss.LayerDrop or "
                         "ss.WandaPruning for it")
    windows = calibration_windows(lm, calibration, config.calibration_windows, config.calibration_tokens)
    probes = {}
    for i, b in enumerate(blocks):
        probes[f"{i}.down"] = b.mlp.down_proj
        probes[f"{i}.o"] = b.self_attn.o_proj
    if config.refit:  # X^T X gives the norms (its diagonal) and the least-squares refit
        hess = input_hessians(pruned, probes, windows)
        norms = {k: torch.diagonal(h).clamp(min=0).sqrt().float() for k, h in hess.items()}
    else:
        hess, norms = {}, input_norms(pruned, probes, windows)
    records: list[LayerRecord] = []
    heads, kv = int(cfg.num_attention_heads), int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    d = int(blocks[0].self_attn.head_dim)
    rep = heads // kv
    inter = int(cfg.intermediate_size)
    keep_ffn = inter - round(inter * config.ffn_ratio)
    if config.heads == "groups":
        new_kv, new_rep = max(1, kv - round(kv * config.head_ratio)), rep
    else:
        new_kv, new_rep = kv, max(1, rep - round(rep * config.head_ratio))
    with torch.no_grad():
        for i, b in enumerate(blocks):
            name = f"{path}.{i}"
            if keep_ffn < inter:
                mlp = b.mlp
                score = norms[f"{i}.down"] * mlp.down_proj.weight.float().norm(dim=0)
                idx = _keep(score, keep_ffn)
                down = _refit(mlp.down_proj, idx, hess.get(f"{i}.down"))
                mlp.gate_proj, mlp.up_proj = _linear(mlp.gate_proj, rows=idx), _linear(mlp.up_proj, rows=idx)
                mlp.down_proj = _linear(mlp.down_proj, cols=idx)
                extra = {}
                if down is not None:
                    mlp.down_proj.weight.data.copy_(down[0])
                    extra["refit_error_removed"] = round(down[1], 4)
                records.append(LayerRecord(f"{name}.mlp", "pruned", "neurons", inter, keep_ffn,
                                           "lowest ||activation|| * ||down_proj column|| on the calibration text"
                                           + ("; down_proj refit by least squares" if down is not None else ""),
                                           extra))
            if (new_kv, new_rep) != (kv, rep):
                records.append(_cut_heads(b.self_attn, norms[f"{i}.o"], kv, rep, d, new_kv, new_rep,
                                          f"{name}.self_attn", hess.get(f"{i}.o")))
    cfg.intermediate_size = keep_ffn
    cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim = new_kv * new_rep, new_kv, d
    pruned.name = f"{lm.name} (width-pruned)"
    history = recover_lm(pruned, lm, windows, config, train=train)
    summary = {"config": config.to_dict(), "params_before": _params(lm), "params": _params(pruned),
               "intermediate_size": [inter, keep_ffn], "num_attention_heads": [heads, new_kv * new_rep],
               "num_key_value_heads": [kv, new_kv], "recovery": history}
    return PruneResult(_result_model(model, lm, pruned), records, summary)


def _refit(layer: nn.Linear, cols: torch.Tensor, hessian: torch.Tensor | None) -> tuple[torch.Tensor, float] | None:
    return None if hessian is None else refit_columns(layer.weight.data, cols, hessian)


def _cut_heads(attn: nn.Module, norms: torch.Tensor, kv: int, rep: int, d: int, new_kv: int, new_rep: int,
               name: str, hessian: torch.Tensor | None = None) -> LayerRecord:
    """Keep ``new_kv`` KV groups with ``new_rep`` query heads each; query head h belongs to group h // rep."""
    feat = norms * attn.o_proj.weight.float().norm(dim=0)  # each o_proj input feature's share of the output
    head_score = feat.view(kv, rep, d).sum(-1)  # (group, query head in group)
    groups = _keep(head_score.sum(1), new_kv)
    q_heads = [int(g) * rep + int(j) for g in groups for j in _keep(head_score[g], new_rep)]
    q_rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in q_heads])
    kv_rows = torch.cat([torch.arange(int(g) * d, (int(g) + 1) * d) for g in groups])
    refit = _refit(attn.o_proj, q_rows, hessian)
    attn.q_proj, attn.o_proj = _linear(attn.q_proj, rows=q_rows), _linear(attn.o_proj, cols=q_rows)
    if refit is not None:
        attn.o_proj.weight.data.copy_(refit[0])
    attn.k_proj, attn.v_proj = _linear(attn.k_proj, rows=kv_rows), _linear(attn.v_proj, rows=kv_rows)
    attn.num_key_value_groups = new_rep
    how = (f"kept {new_kv} of {kv} KV groups with all their query heads" if new_rep == rep
           else f"kept {new_rep} of {rep} query heads in every KV group")
    extra = {"kept_query_heads": q_heads, "kept_kv_groups": [int(g) for g in groups]}
    if refit is not None:
        extra["refit_error_removed"] = round(refit[1], 4)
    return LayerRecord(name, "pruned", "heads", kv * rep, new_kv * new_rep,
                       f"{how}, by the norm of each head's output into o_proj on the calibration text"
                       + ("; o_proj refit by least squares" if refit is not None else ""), extra)


@HANDLERS.register(LayerDrop)
class LayerDropHandler(_LMHandler):
    def run(self, model: Any, config: LayerDrop, request: Request) -> PruneResult:
        return drop_layers(model, config, request.calibration, request.train)


@HANDLERS.register(WidthPruning)
class WidthHandler(_LMHandler):
    def run(self, model: Any, config: WidthPruning, request: Request) -> PruneResult:
        return prune_width(model, config, request.calibration, request.train)


@HANDLERS.register(StructuredPruning)
class LMStructuredHandler(_LMHandler):
    """StructuredPruning on a causal LM: ``ratio`` of FFN neurons and ``head_ratio`` of KV groups, by activations."""

    def run(self, model: Any, config: StructuredPruning, request: Request) -> PruneResult:
        refuse_unused(config, ("ratio", "head_ratio", "recovery", "recovery_steps", "seed"),
                      "ss.WidthPruning(ffn_ratio=..., head_ratio=...) for the LM options")
        recovery = {"none": "none", "finetune": "lm", "distill": "distill"}[config.recovery]
        cfg = WidthPruning(ffn_ratio=config.ratio, head_ratio=config.head_ratio, recovery=recovery,
                           recovery_steps=config.recovery_steps, seed=config.seed)
        result = prune_width(model, cfg, request.calibration, request.train)
        result.summary["config"] = config.to_dict()
        return result
