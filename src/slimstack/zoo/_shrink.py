"""``ss.zoo.shrink``: a smaller copy of a model, initialised from the model's own weights.

A student that starts from its teacher's weights learns faster and ends better than one that
starts from random numbers. Transformers keep a subset of their layers (e.g. MiniLM 6 -> 3);
MLPs and CNNs keep their most important units (a width-reduced copy). The input model is never
changed: the new model is built from copies.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._utils import any_grad_mode
from ..errors import ConfigError, ModelError
from ._encoder import SentenceEncoder
from ._models import DigitsCNN, DigitsMLP

__all__ = ["shrink", "spread_layers"]


@any_grad_mode
def shrink(model: nn.Module, *, layers: int | Sequence[int] | None = None,
           width: float | Sequence[int] | None = None) -> nn.Module:
    """Return a layer- or width-reduced copy of ``model``, initialised from ``model``'s weights.

    Parameters
    ----------
    model : SentenceEncoder, transformers BertModel, CausalLM (decoder layers), DigitsMLP or DigitsCNN
    layers : int or list of int
        Transformers: how many layers to keep (an even spread that always keeps the first and last
        layer, see :func:`spread_layers`) or exactly which ones (0-based, e.g. ``[0, 3, 5]``).
    width : float or sequence of int
        MLPs and CNNs: the share of units to keep in every hidden layer (e.g. ``0.25``), or the new
        widths (MLP: one per hidden layer; CNN: ``(channels1, channels2, hidden)``). The units kept
        are the most important ones: largest incoming weight (or BatchNorm scale, for channels)
        times outgoing weight norm.

    Examples
    --------
    >>> student = ss.zoo.shrink(ss.zoo.minilm(), layers=3)          # teacher layers 0, 3, 5
    >>> student.model.config.num_hidden_layers
    3
    >>> small = ss.zoo.shrink(ss.zoo.digits_cnn(), width=0.25)      # ~7% of the parameters
    """
    from ..llm import CausalLM

    if isinstance(model, CausalLM):  # drop decoder layers (slimstack.llm.shrink_lm)
        from ..llm import shrink_lm

        _only(layers, width, "layers", type(model).__name__)
        return shrink_lm(model, layers)
    if isinstance(model, SentenceEncoder):
        _only(layers, width, "layers", type(model).__name__)
        new = SentenceEncoder(_shrink_bert(model.model, layers), model.tokenizer, **model.get_config())
        return new.eval()
    if _is_transformer(model):
        _only(layers, width, "layers", type(model).__name__)
        return _shrink_bert(model, layers)
    if isinstance(model, DigitsMLP):
        _only(width, layers, "width", type(model).__name__)
        return _shrink_mlp(model, width)
    if isinstance(model, DigitsCNN):
        _only(width, layers, "width", type(model).__name__)
        return _shrink_cnn(model, width)
    from .._arch import supported_families

    raise ModelError(
        f"ss.zoo.shrink does not know how to shrink a {type(model).__name__}; it handles SentenceEncoder and "
        f"Hugging Face transformers of the families {supported_families()} (layers=), DigitsMLP and DigitsCNN "
        "(width=). Pass your own smaller student module to ss.distill instead"
    )


def spread_layers(n_layers: int, keep: int) -> list[int]:
    """``keep`` of ``n_layers`` layers, evenly spread, always the first and the last.

    Rounds half up, which for 6 -> 3 gives ``[0, 3, 5]``: on STS-B this untrained choice scores
    0.842 Spearman against 0.738 for ``[0, 2, 4]``, because the last layer produces the space
    that mean pooling was trained on.
    """
    if keep == 1:
        return [n_layers - 1]
    return [int(i * (n_layers - 1) / (keep - 1) + 0.5) for i in range(keep)]


def _only(given: Any, other: Any, name: str, kind: str) -> None:
    other_name = "width" if name == "layers" else "layers"
    if other is not None:
        raise ConfigError(f"ss.zoo.shrink of a {kind} takes {name}=, not {other_name}={other!r}; pass {name}= instead")
    if given is None:
        raise ConfigError(f"ss.zoo.shrink of a {kind} needs {name}=, e.g. " +
                          ("layers=3 or layers=[0, 3, 5]" if name == "layers" else "width=0.25"))


def _is_transformer(model: nn.Module) -> bool:
    """A Hugging Face model (base or task model) of a family in slimstack._arch; other families raise there."""
    from .._arch import find_stack, transformer_model_type

    return transformer_model_type(model) is not None and find_stack(model, what="ss.zoo.shrink") is not None


def _layer_choice(n: int, layers: int | Sequence[int]) -> list[int]:
    if isinstance(layers, int) and not isinstance(layers, bool):
        if not 1 <= layers <= n:
            raise ConfigError(f"layers={layers} must be between 1 and the model's {n} layers")
        return spread_layers(n, layers)
    chosen = list(layers)
    if not chosen or not all(isinstance(i, int) and not isinstance(i, bool) for i in chosen):
        raise ConfigError(f"layers={layers!r} must be a count or a non-empty list of layer indices, e.g. [0, 3, 5]")
    bad = [i for i in chosen if not 0 <= i < n]
    if bad:
        raise ConfigError(f"layers={chosen} holds {bad}, outside the model's layers 0..{n - 1}")
    if len(set(chosen)) != len(chosen) or chosen != sorted(chosen):
        raise ConfigError(f"layers={chosen} must be increasing and without repeats, e.g. {sorted(set(chosen))}")
    return chosen


def _shrink_bert(model: nn.Module, layers: int | Sequence[int]) -> nn.Module:
    from .._arch import find_stack

    stack = find_stack(model, required=True, what="ss.zoo.shrink")
    keep = stack.layers()
    chosen = _layer_choice(len(keep), layers)
    stack.set_layers(nn.ModuleList())  # do not deep-copy layers that will be dropped
    try:
        new = copy.deepcopy(model)
    finally:
        stack.set_layers(keep)
    new_stack = find_stack(new, required=True)
    new_stack.set_layers(nn.ModuleList(copy.deepcopy(keep[i]) for i in chosen))
    for new_idx, layer in enumerate(new_stack.layers()):
        for mod in layer.modules():  # cache slots are indexed by position in the new stack
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = new_idx
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(chosen)
    config.shrunk_from_layers = chosen
    for m in new.modules():  # every sub-model (ViTModel inside ViTForImageClassification, its encoder) shares it
        if getattr(m, "config", None) is not None and type(m.config) is type(config):
            m.config = config
    return new.eval()


def _width(width: Any, old: list[int], name: str) -> list[int]:
    if isinstance(width, int | float) and not isinstance(width, bool):
        if not 0 < width <= 1:
            raise ConfigError(f"width={width!r} is the share of units to keep; use a value in (0, 1], e.g. 0.25")
        return [max(1, int(round(w * width))) for w in old]
    new = list(width)
    if len(new) != len(old) or not all(isinstance(w, int) and 1 <= w <= o for w, o in zip(new, old)):
        raise ConfigError(
            f"width={new!r} must give {len(old)} widths ({name}), each between 1 and the teacher's {old}"
        )
    return new


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, in their original order (keeps layouts readable)."""
    return torch.sort(torch.topk(scores, k).indices).values


@torch.no_grad()
def _shrink_mlp(model: DigitsMLP, width: Any) -> DigitsMLP:
    cfg = model.get_config()
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    hidden = _width(width, list(cfg["hidden"]), "one per hidden layer")
    new = DigitsMLP(**{**cfg, "hidden": hidden})
    new_linears = [m for m in new.net if isinstance(m, nn.Linear)]
    keep_in = torch.arange(linears[0].in_features)
    for i, (old, dst) in enumerate(zip(linears, new_linears)):
        if i < len(hidden):
            nxt = linears[i + 1].weight
            score = old.weight[:, keep_in].norm(dim=1) * nxt.norm(dim=0)
            keep_out = _top(score, hidden[i])
        else:
            keep_out = torch.arange(old.out_features)
        dst.weight.copy_(old.weight[keep_out][:, keep_in])
        dst.bias.copy_(old.bias[keep_out])
        keep_in = keep_out
    return new.train(model.training)


@torch.no_grad()
def _shrink_cnn(model: DigitsCNN, width: Any) -> DigitsCNN:
    cfg = model.get_config()
    c1, c2 = cfg["channels"]
    n1, n2, nh = _width(width, [c1, c2, cfg["hidden"]], "channels1, channels2, hidden")
    conv1, bn1, _, conv2, bn2 = list(model.features)[:5]
    fc1, fc2 = model.classifier[1], model.classifier[3]
    spatial = fc1.in_features // c2
    fc1_w = fc1.weight.reshape(fc1.out_features, c2, spatial)
    k1 = _top(bn1.weight.abs() * conv2.weight.flatten(2).norm(dim=(0, 2)), n1)
    k2 = _top(bn2.weight.abs() * fc1_w.norm(dim=(0, 2)), n2)
    kh = _top(fc1.weight.norm(dim=1) * fc2.weight.norm(dim=0), nh)
    new = DigitsCNN(channels=(n1, n2), hidden=nh, num_classes=cfg["num_classes"])
    nconv1, nbn1, _, nconv2, nbn2 = list(new.features)[:5]
    nconv1.weight.copy_(conv1.weight[k1])
    nconv1.bias.copy_(conv1.bias[k1])
    _copy_bn(nbn1, bn1, k1)
    nconv2.weight.copy_(conv2.weight[k2][:, k1])
    nconv2.bias.copy_(conv2.bias[k2])
    _copy_bn(nbn2, bn2, k2)
    new.classifier[1].weight.copy_(fc1_w[kh][:, k2].reshape(nh, n2 * spatial))
    new.classifier[1].bias.copy_(fc1.bias[kh])
    new.classifier[3].weight.copy_(fc2.weight[:, kh])
    new.classifier[3].bias.copy_(fc2.bias)
    return new.train(model.training)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, keep: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[keep])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
