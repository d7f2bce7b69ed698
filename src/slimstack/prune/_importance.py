"""How to score what to cut: L1, L2, first-order Taylor and random importance.

Torch models use Torch-Pruning's group importances (scores summed over coupled layers).
BERT encoders are scored here per attention head and per FFN neuron: a head's norm is taken over
its query/key/value rows and its output-projection columns; Taylor importance is
``|dL/dm|`` of a mask ``m`` multiplying the head's (or neuron's) output (Michel et al. 2019),
with ``L`` the cosine-similarity loss on scored sentence pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DataError, unknown_name

__all__ = ["Importance", "IMPORTANCES", "register_importance", "importance", "tp_importance", "taylor_gradients",
           "encoder_scores"]


@dataclasses.dataclass(frozen=True)
class Importance:
    """One way to rank what to cut, for both structured backends.

    ``torch_pruning()`` builds the Torch-Pruning group importance (networks); ``encoder(encoder,
    stack, layers, data, seed, batches)`` returns per-layer head and FFN-neuron scores (transformers);
    ``needs_gradients`` says the network backend must accumulate loss gradients on labelled data first.
    """

    name: str
    torch_pruning: Callable[[], Any]
    encoder: Callable[..., tuple[list[torch.Tensor], list[torch.Tensor]]]
    needs_gradients: bool = False


IMPORTANCES: dict[str, Importance] = {}


def register_importance(imp: Importance) -> Importance:
    """Add an importance; ``StructuredPruning(importance=imp.name)`` then accepts it."""
    IMPORTANCES[imp.name] = imp
    return imp


def importance(name: str) -> Importance:
    if name not in IMPORTANCES:
        raise unknown_name("importance", name, IMPORTANCES)
    return IMPORTANCES[name]


def tp_importance(name: str):
    """The Torch-Pruning importance object for ``name``."""
    return importance(name).torch_pruning()


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


def _head_norms(stack: Any, layer: nn.Module, p: int) -> torch.Tensor:
    h, d = stack.heads(layer), stack.head_dim(layer)
    rows = [stack.get(layer, n).weight.detach().reshape(h, d, -1).abs().pow(p).sum((1, 2)) for n in ("q", "k", "v")]
    cols = stack.get(layer, "o").weight.detach().reshape(-1, h, d).abs().pow(p).sum((0, 2))
    return (sum(rows) + cols).pow(1 / p)


def _ffn_norms(stack: Any, layer: nn.Module, p: int) -> torch.Tensor:
    w_in = stack.get(layer, "fc1").weight.detach().abs().pow(p).sum(1)
    w_out = stack.get(layer, "fc2").weight.detach().abs().pow(p).sum(0)
    return (w_in + w_out).pow(1 / p)


def logits(out: Any) -> torch.Tensor:
    """The score tensor of a model's output (Hugging Face task models return an output object)."""
    if isinstance(out, torch.Tensor):
        return out
    if getattr(out, "logits", None) is not None:
        return out.logits
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise DataError(f"cannot read class scores from a {type(out).__name__} output; return a tensor of logits")


def encoder_scores(encoder: nn.Module, importance_name: str, data: Any, *, seed: int, batches: int,
                   stack: Any = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer importance of each attention head and each FFN neuron of a transformer stack."""
    from .._arch import find_stack

    stack = stack or find_stack(encoder, required=True)
    return importance(importance_name).encoder(encoder, stack, list(stack.layers()), data, seed, batches)


def _norms(p: int):
    def scores(encoder, stack, layers, data, seed, batches):
        return [_head_norms(stack, l, p) for l in layers], [_ffn_norms(stack, l, p) for l in layers]

    return scores


def _random_scores(encoder, stack, layers, data, seed, batches):
    gen = torch.Generator().manual_seed(seed)
    return ([torch.rand(stack.heads(l), generator=gen) for l in layers],
            [torch.rand(stack.ffn_width(l), generator=gen) for l in layers])


def _taylor_loss(model: nn.Module, data: Any):
    """``loss(batch_rows)`` for Taylor scores: STS cosine loss for sentence encoders, else the task loss."""
    if hasattr(model, "tokenize") and hasattr(model, "encode"):
        if data is None or getattr(data, "pairs", None) is None or getattr(data, "scores", None) is None:
            raise DataError("importance='taylor' on a sentence encoder needs scored sentence pairs for its loss; pass "
                            "data=ss.datasets.load('stsb') (or your own pairs and scores), or use importance='l2'")
        scores = np.asarray(data.scores, dtype=np.float32)
        scale = float(scores.max()) or 1.0

        def sts(idx):
            a = model(**model.tokenize([data.pairs[i][0] for i in idx]))
            c = model(**model.tokenize([data.pairs[i][1] for i in idx]))
            return F.mse_loss(F.cosine_similarity(a, c, dim=-1), torch.as_tensor(scores[idx] / scale))

        return sts, len(data.pairs)
    if data is None or getattr(data, "X", None) is None or getattr(data, "y", None) is None:
        raise ConfigError("importance='taylor' ranks heads and neurons by loss gradients and needs labelled data; "
                          "pass data=ds or use importance='l2'")
    classify = data.task == "classification"

    def task(idx):
        out = logits(model(torch.as_tensor(np.ascontiguousarray(data.X[idx]))))
        y = torch.as_tensor(data.y[idx], dtype=torch.long if classify else torch.float32)
        return F.cross_entropy(out, y) if classify else F.mse_loss(out.squeeze(-1), y)

    return task, len(data.X)


def _taylor_encoder(encoder: nn.Module, stack: Any, layers: list[nn.Module], data: Any, seed: int, batches: int):
    """``|dL/dm|`` of masks on each head's and neuron's output, summed over ``batches`` batches."""
    loss_of, n = _taylor_loss(encoder, data)
    head_masks = [torch.ones(stack.heads(l), requires_grad=True) for l in layers]
    ffn_masks = [torch.ones(stack.ffn_width(l), requires_grad=True) for l in layers]
    head_imp = [torch.zeros_like(m) for m in head_masks]
    ffn_imp = [torch.zeros_like(m) for m in ffn_masks]
    handles = []
    for layer, hm, fm in zip(layers, head_masks, ffn_masks, strict=True):
        d = stack.head_dim(layer)
        # masks on the inputs of the output projections: head h's context columns, FFN neuron j's activation
        handles.append(stack.get(layer, "o").register_forward_pre_hook(
            lambda mod, a, hm=hm, d=d: (a[0] * hm.repeat_interleave(d), *a[1:])))
        handles.append(stack.get(layer, "fc2").register_forward_pre_hook(
            lambda mod, a, fm=fm: (a[0] * fm, *a[1:])))
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    was_training = encoder.training
    encoder.eval()
    try:
        for b in range(batches):
            idx = order[b * 16 : (b + 1) * 16]
            if len(idx) == 0:
                break
            loss = loss_of(idx)
            grads = torch.autograd.grad(loss, head_masks + ffn_masks)
            for acc, g in zip(head_imp + ffn_imp, grads, strict=True):
                acc += g.abs()
    finally:
        for h in handles:
            h.remove()
        encoder.train(was_training)
    return head_imp, ffn_imp


def _tp(kind: str, **kw: Any) -> Callable[[], Any]:
    def build():
        import torch_pruning as tp

        return getattr(tp.importance, kind)(**kw)

    return build


# The order is the order error messages list them in.
register_importance(Importance("l1", _tp("GroupMagnitudeImportance", p=1), _norms(1)))
register_importance(Importance("l2", _tp("GroupMagnitudeImportance", p=2), _norms(2)))
register_importance(Importance("taylor", _tp("GroupTaylorImportance"), _taylor_encoder, needs_gradients=True))
register_importance(Importance("random", _tp("RandomImportance"), _random_scores))
