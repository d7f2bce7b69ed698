"""Calibration for LM pruning: token windows from text, and the statistics one forward pass collects.

What to measure lives here; what to cut lives in ``_lm_sparse`` / ``_lm_structured``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DataError, ModelError

__all__ = ["as_causal_lm", "calibration_windows", "input_norms", "linear_layers", "block_importance"]


def as_causal_lm(model: Any) -> Any:
    """``model`` as a :class:`CausalLM` (a raw transformers causal LM gets wrapped, without tokenizer)."""
    from ..llm import CausalLM

    if isinstance(model, CausalLM):
        return model
    from ..llm import causal_lm_classes as _causal_lm_classes

    if isinstance(model, nn.Module) and hasattr(model, "config") and type(model).__name__ in _causal_lm_classes():
        return CausalLM(model, None, name=type(model).__name__)
    raise ModelError(f"this pruning config is for causal language models (ss.zoo.smollm2(), a CausalLM or a "
                     f"transformers *ForCausalLM), got {type(model).__module__}.{type(model).__name__}; "
                     "prune other models with ss.MagnitudePruning, ss.NMPruning or ss.StructuredPruning")


def calibration_windows(lm: Any, calibration: Any, windows: int, tokens: int) -> list[torch.Tensor]:
    """Up to ``windows`` consecutive windows of ``tokens`` token ids (the last may be shorter, >= 2)."""
    from ..datasets import Dataset

    if calibration is None:
        raise DataError("LM pruning measures importance on calibration text; pass calibration=texts "
                        "(a list of strings, ss.datasets.load('pytorch_readme', split='train') or token-id windows)")
    if isinstance(calibration, Dataset):
        if calibration.task != "lm":
            raise DataError(f"calibration dataset {calibration.name!r} has task {calibration.task!r}; pass text "
                            "(a task-'lm' dataset such as ss.datasets.load('pytorch_readme'))")
        calibration = list(calibration.texts)
    if isinstance(calibration, str):
        calibration = [calibration]
    items = list(calibration)
    streams: list[np.ndarray] = []
    for item in items:
        if isinstance(item, str):
            if lm.tokenizer is None:
                raise DataError("this model has no tokenizer; pass calibration as token-id windows")
            streams.append(np.asarray(lm.tokenizer(item)["input_ids"], dtype=np.int64))
        else:
            streams.append(np.asarray(item, dtype=np.int64).reshape(-1))
    ids = np.concatenate(streams) if streams else np.zeros(0, dtype=np.int64)
    tokens = min(tokens, lm.context_length)
    out = [torch.as_tensor(ids[i : i + tokens]) for i in range(0, len(ids), tokens)]
    out = [w for w in out if len(w) >= 2][:windows]
    if not out:
        raise DataError(f"calibration text is empty ({len(ids)} tokens from {len(items)} items); pass at least "
                        "one text of two or more tokens")
    return out


def linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear-like layers (``nn.Linear``, GPT-2's ``Conv1D``) by name, weights laid out (out, in) or (in, out)."""
    from transformers.pytorch_utils import Conv1D

    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear | Conv1D)}


def rows_view(module: nn.Module) -> torch.Tensor:
    """The weight as (output, input): Conv1D stores it transposed."""
    return module.weight.data if isinstance(module, nn.Linear) else module.weight.data.T


def _forward(lm: Any, windows: list[torch.Tensor]) -> None:
    with torch.inference_mode():
        for w in windows:
            lm.model(input_ids=w[None], use_cache=False)


def input_norms(lm: Any, layers: dict[str, nn.Module], windows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``||X_j||_2`` over every calibration token of each input feature ``j`` of each layer (one pass)."""
    sums: dict[str, torch.Tensor] = {}
    hooks = []

    def hook(name: str):
        def fn(_mod: nn.Module, args: tuple, _out: Any) -> None:
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])
            sq = (x * x).sum(0)
            sums[name] = sums[name] + sq if name in sums else sq
        return fn

    for name, mod in layers.items():
        hooks.append(mod.register_forward_hook(hook(name)))
    try:
        _forward(lm, windows)
    finally:
        for h in hooks:
            h.remove()
    return {n: s.sqrt() for n, s in sums.items()}


def _hidden(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, tuple | list) else x


def block_importance(lm: Any, windows: list[torch.Tensor], importance: str) -> list[float]:
    """Importance of every decoder block: ``1 - cos(in, out)`` (ShortGPT) or the KLD when it alone is skipped."""
    from ..llm import decoder_layers

    _, blocks = decoder_layers(lm.model)
    if importance == "cosine":
        scores = [0.0] * len(blocks)
        counts = [0] * len(blocks)
        hooks = []

        def hook(i: int):
            def fn(_mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
                h_in = (args[0] if args else kwargs["hidden_states"]).float()
                h_out = _hidden(out).float()
                cos = torch.nn.functional.cosine_similarity(h_in, h_out, dim=-1)
                scores[i] += float((1 - cos).sum())
                counts[i] += cos.numel()
            return fn

        for i, b in enumerate(blocks):
            hooks.append(b.register_forward_hook(hook(i), with_kwargs=True))
        try:
            _forward(lm, windows)
        finally:
            for h in hooks:
                h.remove()
        return [s / max(1, c) for s, c in zip(scores, counts, strict=True)]
    return [_skip_kld(lm, blocks, i, windows) for i in range(len(blocks))]


def _skip_kld(lm: Any, blocks: nn.ModuleList, i: int, windows: list[torch.Tensor]) -> float:
    """Mean per-token KL(full || block i skipped): the block's forward returns its input unchanged."""
    def skip(_mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
        h_in = args[0] if args else kwargs["hidden_states"]
        return (h_in, *out[1:]) if isinstance(out, tuple) else h_in

    total, count = 0.0, 0
    with torch.inference_mode():
        for w in windows:
            ref = torch.log_softmax(lm.model(input_ids=w[None], use_cache=False).logits.float(), -1)
            h = blocks[i].register_forward_hook(skip, with_kwargs=True)
            try:
                got = torch.log_softmax(lm.model(input_ids=w[None], use_cache=False).logits.float(), -1)
            finally:
                h.remove()
            total += float((ref.exp() * (ref - got)).sum())
            count += ref.shape[1]
    return total / max(1, count)
