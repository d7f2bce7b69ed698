"""How to score what to cut: L1, L2, first-order Taylor and random importance.

Torch models use Torch-Pruning's group importances (scores summed over coupled layers).
BERT encoders are scored here per attention head and per FFN neuron: a head's norm is taken over
its query/key/value rows and its output-projection columns; Taylor importance is
``|dL/dm|`` of a mask ``m`` multiplying the head's (or neuron's) output (Michel et al. 2019),
with ``L`` the cosine-similarity loss on scored sentence pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError

__all__ = ["tp_importance", "taylor_gradients", "encoder_scores"]


def tp_importance(name: str):
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.RandomImportance()


def taylor_gradients(model: nn.Module, data: Any, batches: int, seed: int) -> None:
    """Accumulate the task loss's gradients in ``model``'s parameters (what Taylor importance reads)."""
    if data is None or getattr(data, "X", None) is None or getattr(data, "y", None) is None:
        raise ConfigError("importance='taylor' ranks channels by loss gradients and needs labelled data; pass "
                          "data=ds (e.g. ss.datasets.load('digits')) or use importance='l2'")
    classify = data.task == "classification"
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data.X))
    model.zero_grad(set_to_none=True)
    model.eval()
    per = max(1, min(64, len(idx) // batches))
    for b in range(batches):
        rows = idx[b * per : (b + 1) * per]
        if len(rows) == 0:
            break
        out = model(torch.as_tensor(np.ascontiguousarray(data.X[rows])))
        y = torch.as_tensor(data.y[rows], dtype=torch.long if classify else torch.float32)
        loss = F.cross_entropy(out, y) if classify else F.mse_loss(out.squeeze(-1), y)
        loss.backward()


def _head_norms(layer: nn.Module, p: int) -> torch.Tensor:
    att = layer.attention.self
    h, d = att.num_attention_heads, att.attention_head_size
    rows = [getattr(att, n).weight.detach().reshape(h, d, -1).abs().pow(p).sum((1, 2)) for n in ("query", "key", "value")]
    cols = layer.attention.output.dense.weight.detach().reshape(-1, h, d).abs().pow(p).sum((0, 2))
    return (sum(rows) + cols).pow(1 / p)


def _ffn_norms(layer: nn.Module, p: int) -> torch.Tensor:
    w_in = layer.intermediate.dense.weight.detach().abs().pow(p).sum(1)
    w_out = layer.output.dense.weight.detach().abs().pow(p).sum(0)
    return (w_in + w_out).pow(1 / p)


def encoder_scores(encoder: nn.Module, importance: str, data: Any, *, seed: int, batches: int
                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer importance of each attention head and each FFN neuron of a BERT encoder."""
    layers = list(encoder.model.encoder.layer)
    if importance in ("l1", "l2"):
        p = 1 if importance == "l1" else 2
        return [_head_norms(l, p) for l in layers], [_ffn_norms(l, p) for l in layers]
    if importance == "random":
        gen = torch.Generator().manual_seed(seed)
        return ([torch.rand(l.attention.self.num_attention_heads, generator=gen) for l in layers],
                [torch.rand(l.intermediate.dense.out_features, generator=gen) for l in layers])
    return _taylor_encoder(encoder, layers, data, seed, batches)


def _taylor_encoder(encoder: nn.Module, layers: list[nn.Module], data: Any, seed: int, batches: int):
    if data is None or getattr(data, "pairs", None) is None or getattr(data, "scores", None) is None:
        raise DataError("importance='taylor' on a sentence encoder needs scored sentence pairs for its loss; pass "
                        "data=ss.datasets.load('stsb') (or your own pairs and scores), or use importance='l2'")
    head_masks = [torch.ones(l.attention.self.num_attention_heads, requires_grad=True) for l in layers]
    ffn_masks = [torch.ones(l.intermediate.dense.out_features, requires_grad=True) for l in layers]
    head_imp = [torch.zeros_like(m) for m in head_masks]
    ffn_imp = [torch.zeros_like(m) for m in ffn_masks]
    handles = []
    for layer, hm, fm in zip(layers, head_masks, ffn_masks, strict=True):
        d = layer.attention.self.attention_head_size

        def head_hook(mod, args, out, hm=hm, d=d):
            return (out[0] * hm.repeat_interleave(d), *out[1:])

        handles.append(layer.attention.self.register_forward_hook(head_hook))
        handles.append(layer.intermediate.register_forward_hook(lambda mod, a, out, fm=fm: out * fm))
    scores = np.asarray(data.scores, dtype=np.float32)
    scale = float(scores.max()) or 1.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.pairs))
    was_training = encoder.training
    encoder.eval()
    try:
        for b in range(batches):
            idx = order[b * 16 : (b + 1) * 16]
            if len(idx) == 0:
                break
            a = encoder(**encoder.tokenize([data.pairs[i][0] for i in idx]))
            c = encoder(**encoder.tokenize([data.pairs[i][1] for i in idx]))
            loss = F.mse_loss(F.cosine_similarity(a, c, dim=-1), torch.as_tensor(scores[idx] / scale))
            grads = torch.autograd.grad(loss, head_masks + ffn_masks)
            for acc, g in zip(head_imp + ffn_imp, grads, strict=True):
                acc += g.abs()
    finally:
        for h in handles:
            h.remove()
        encoder.train(was_training)
    return head_imp, ffn_imp
