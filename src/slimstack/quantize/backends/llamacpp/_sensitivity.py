"""Measured sensitivity: the KL divergence to the float model when one unit (a list of tensors) alone is rounded.

One float pass records every decoder layer's input and output on the sensitivity windows; a unit
inside layer ``i`` then re-runs only layers ``i..end`` (earlier layers replay their recorded
outputs), the final norm and the head. :func:`tensor_sensitivity` measures each decoder layer that
way with all its tensors rounded, and shares the layer's KLD among its tensors by how much each one
alone moves the layer's output (``||block(x) - block_float(x)||^2``, one layer forward each): unlike the
Linear's own output error, that sees v's error amplified through o and q/k's through the softmax. Only positions after ``context`` tokens are scored, as llama.cpp's perplexity /
KL-divergence tool does (second half of each chunk): the first tokens of a window have no context
and a model's next-token distribution there can be near-uniform junk whose KL to anything is large
and arbitrary, which would swamp the ranking.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["Probe", "layer_index", "measure", "tensor_sensitivity"]


def layer_index(name: str, prefix: str) -> int | None:
    """3 for 'model.layers.3.mlp.up_proj.weight' with prefix 'model.layers'; None outside the stack."""
    if not name.startswith(prefix + "."):
        return None
    head = name[len(prefix) + 1:].split(".", 1)[0]
    return int(head) if head.isdigit() else None


class _Replay(nn.Module):
    """Stands in for a decoder layer: returns the output it is handed (recorded from the float pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.out: Any = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.out


def _hidden(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, tuple | list) else x


def _kld(ref: torch.Tensor, lp: torch.Tensor) -> float:
    return float((ref.exp() * (ref - lp)).sum(-1).mean())


class Probe:
    """Reference log-probabilities and per-layer outputs of ``model`` on ``windows`` (token id tensors)."""

    def __init__(self, model: nn.Module, windows: list[torch.Tensor], context: int):
        from ....llm import decoder_layers

        self.model, self.windows, self.context = model, windows, int(context)
        self.prefix, self.blocks = decoder_layers(model)
        self.params = dict(model.named_parameters())
        outs: list[list[Any]] = [[] for _ in self.blocks]
        self.first: list[tuple[tuple, dict]] = []  # layer 0's (args, kwargs) per window: the stack's input
        hooks = [b.register_forward_hook(self._keep(outs, i)) for i, b in enumerate(self.blocks)]
        hooks.append(self.blocks[0].register_forward_pre_hook(self._keep_in, with_kwargs=True))
        try:
            self.ref = [self._logprobs(w) for w in windows]
        finally:
            for h in hooks:
                h.remove()
        self.outs = outs  # outs[layer][window]

    @staticmethod
    def _keep(outs: list[list[Any]], i: int):
        def fn(_mod: nn.Module, _args: tuple, out: Any) -> None:
            outs[i].append(out)
        return fn

    def _keep_in(self, _mod: nn.Module, args: tuple, kwargs: dict) -> None:
        self.first.append((args, dict(kwargs)))

    @torch.no_grad()
    def moved(self, layer: int, values: dict[str, torch.Tensor]) -> float:
        """Squared change of layer ``layer``'s output (scored positions) with ``values`` swapped in, its input float."""
        saved = {n: self.params[n].detach().clone() for n in values}
        total = 0.0
        try:
            for n, v in values.items():
                self.params[n].copy_(v)
            for k in range(len(self.windows)):
                args, kwargs = self.first[k]
                if layer > 0:
                    prev = self.outs[layer - 1][k]
                    args = (prev[0] if isinstance(prev, tuple) else prev, *args[1:]) if args else ()
                    if not args:
                        kwargs = {**kwargs, "hidden_states": prev[0] if isinstance(prev, tuple) else prev}
                got, ref = _hidden(self.blocks[layer](*args, **kwargs)), _hidden(self.outs[layer][k])
                total += float((got - ref)[:, self.context:].float().pow(2).sum())
        finally:
            for n, v in saved.items():
                self.params[n].copy_(v)
        return total

    @torch.no_grad()
    def _logprobs(self, w: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=w.reshape(1, -1), use_cache=False).logits[0, self.context:].float()
        return torch.log_softmax(logits, -1)

    @torch.no_grad()
    def kld(self, values: dict[str, torch.Tensor]) -> float:
        """Mean KL(float || model with ``values`` swapped in) over the scored positions."""
        starts = [layer_index(n, self.prefix) for n in values]
        start = 0 if not starts or any(s is None for s in starts) else min(starts)
        saved = {n: self.params[n].detach().clone() for n in values}
        stubs = [_Replay() for _ in range(start)]
        real = [self.blocks[i] for i in range(start)]
        try:
            for n, v in values.items():
                self.params[n].copy_(v)
            for i, s in enumerate(stubs):
                self.blocks[i] = s
            total = 0.0
            for k, w in enumerate(self.windows):
                for i, s in enumerate(stubs):
                    s.out = self.outs[i][k]
                total += _kld(self.ref[k], self._logprobs(w))
        finally:
            for i, m in enumerate(real):
                self.blocks[i] = m
            for n, v in saved.items():
                self.params[n].copy_(v)
        return total / max(1, len(self.windows))


def measure(model: nn.Module, units: dict[str, list[str]], rounded: dict[str, torch.Tensor],
            windows: list[torch.Tensor], context: int) -> dict[str, float]:
    """KLD to the float model when each unit (a list of parameter names) alone takes its ``rounded`` values."""
    probe = Probe(model, windows, context)
    return {u: probe.kld({n: rounded[n] for n in names}) for u, names in units.items()}



def tensor_sensitivity(model: nn.Module, tensors: list[str], values: dict[str, torch.Tensor],
                       windows: list[torch.Tensor], context: int) -> tuple[dict[str, float], dict[str, float]]:
    """(per-tensor estimated KLD, per-unit measured KLD) when each tensor alone takes its ``values``.

    Units are decoder layers (all their listed tensors rounded at once; ``"model.layers.3"``) and every
    tensor outside the stack (the embedding, an untied head) on its own.
    """
    probe = Probe(model, windows, context)
    units: dict[str, list[str]] = {}
    for n in tensors:
        i = layer_index(n, probe.prefix)
        units.setdefault(n if i is None else f"{probe.prefix}.{i}", []).append(n)
    unit_kld = {u: probe.kld({n: values[n] for n in names}) for u, names in units.items()}
    per: dict[str, float] = {}
    for u, names in units.items():
        if len(names) == 1:
            per[names[0]] = unit_kld[u]
            continue
        i = layer_index(names[0], probe.prefix)
        moved = {n: probe.moved(i, {n: values[n]}) for n in names}
        tot = sum(moved.values()) or 1.0
        for n in names:
            per[n] = unit_kld[u] * moved[n] / tot
    return per, unit_kld
