"""Structured pruning of torch models with Torch-Pruning: whole channels and neurons, coupled layers kept consistent.

Torch-Pruning's dependency graph finds the layers that must shrink together (a conv, its
BatchNorm, the next layer's inputs, every branch of a residual addition); slimstack decides the
ratios (uniform, per layer, or from sensitivity), protects the output layer, and records every
layer. Sentence encoders go to :mod:`._transformer` instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ._common import failing_module, run_example, weight_layers
from ._importance import importance, taylor_gradients
from ._result import LayerRecord

__all__ = ["TorchBackend"]


def _out_size(m: nn.Module) -> int:
    return int(m.out_features if isinstance(m, nn.Linear) else m.out_channels)


def _in_size(m: nn.Module) -> int:
    return int(m.in_features if isinstance(m, nn.Linear) else m.in_channels)


def _output_layers(model: nn.Module, example: Any) -> list[str]:
    """The last Linear/Conv to run: its outputs are the model's outputs (class scores), so it keeps its width."""
    order: list[str] = []
    handles = [m.register_forward_hook(lambda mod, a, o, n=n: order.append(n)) for n, m in weight_layers(model)]
    try:
        run_example(model, example)
    finally:
        for h in handles:
            h.remove()
    return order[-1:]


class TorchBackend:
    """Units are the root layers of Torch-Pruning's groups; a ratio per unit sets how many channels go."""

    unit = "channels"

    def __init__(self, model: nn.Module, config: Any, example: Any, data: Any):
        self.config = config
        self.example = example
        self.reference_out = run_example(model, self.example)
        self.data = data
        self.output_layers = _output_layers(model, self.example)
        self.skipped: list[LayerRecord] = []
        layers = dict(weight_layers(model))
        ignore = set(config.ignore)
        self.units: dict[str, float] = {}
        for name, mod in layers.items():
            if any(name == i or name.startswith(i + ".") for i in ignore):
                self.skipped.append(LayerRecord(name, "skipped", self.unit, _out_size(mod), _out_size(mod),
                                                "listed in ignore"))
            elif name in self.output_layers:
                self.skipped.append(LayerRecord(name, "skipped", self.unit, _out_size(mod), _out_size(mod),
                                                "output layer: its outputs are the model's outputs"))
            else:
                self.units[name] = (config.layer_ratios or {}).get(name, config.ratio)
        self.frozen = [r.layer for r in self.skipped]

    def _check_sizes(self, model: nn.Module, ratios: dict[str, float]) -> tuple[dict[str, float], list[LayerRecord]]:
        """Drop units that would lose every channel (tiny layers, large round_to) and record why."""
        keep, skipped = {}, []
        rt = self.config.round_to or 1
        for name, r in ratios.items():
            size = _out_size(model.get_submodule(name))
            left = size - int(size * r)
            if r > 0 and left - left % rt <= 0:
                skipped.append(LayerRecord(name, "skipped", self.unit, size, size,
                                           f"pruning {r:.0%} with round_to={rt} would remove every channel of its "
                                           f"{size}; kept whole"))
            else:
                keep[name] = r
        return keep, skipped

    def apply(self, model: nn.Module, ratios: dict[str, float]) -> list[LayerRecord]:
        """Prune ``model`` in place with the given per-unit ratios; return one record per Linear/Conv."""
        import torch_pruning as tp

        ratios, skipped = self._check_sizes(model, ratios)
        before = {n: (_in_size(m), _out_size(m)) for n, m in weight_layers(model)}
        ignored = [model.get_submodule(n) for n in self.frozen + [r.layer for r in skipped]]
        ignored += [model.get_submodule(n) for n, r in ratios.items() if r == 0]
        per_layer = {model.get_submodule(n): r for n, r in ratios.items() if r > 0}
        if not per_layer:
            return self._records(model, before, ratios, skipped)
        imp = importance(self.config.importance)
        kwargs = dict(importance=imp.torch_pruning(), ignored_layers=ignored,
                      round_to=self.config.round_to)
        if self.config.global_pruning and not self.config.layer_ratios and self.config.tolerance_rule is None:
            kwargs.update(global_pruning=True, pruning_ratio=self.config.ratio)
        else:
            kwargs.update(pruning_ratio=0.0, pruning_ratio_dict=per_layer)
        torch.manual_seed(self.config.seed)
        try:
            pruner = tp.pruner.MetaPruner(model, self.example, **kwargs)
        except Exception as exc:
            culprit = failing_module(model, lambda: tp.DependencyGraph().build_dependency(model, self.example))
            where = f"module {culprit!r} ({type(model.get_submodule(culprit)).__name__})" if culprit else "the model"
            raise ModelError(
                f"Torch-Pruning cannot trace {type(model).__name__}: {where} failed with {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}. Add it to StructuredPruning(ignore=[...]) if its "
                "channels must not change, rewrite it with standard layers, or use MagnitudePruning/NMPruning"
            ) from exc
        if imp.needs_gradients:
            taylor_gradients(model, self.data, self.config.taylor_batches, self.config.seed)
        pruner.step()
        model.zero_grad(set_to_none=True)
        self._check_output(model)
        return self._records(model, before, ratios, skipped)

    def _check_output(self, model: nn.Module) -> None:
        out = run_example(model, self.example)
        if isinstance(out, torch.Tensor) and out.shape != self.reference_out.shape:
            raise ModelError(f"pruning changed the output shape from {tuple(self.reference_out.shape)} to "
                             f"{tuple(out.shape)}; list the output layer in ignore=[...]")

    def _records(self, model: nn.Module, before: dict[str, tuple[int, int]], ratios: dict[str, float],
                 skipped: list[LayerRecord]) -> list[LayerRecord]:
        records = list(self.skipped) + skipped
        done = {r.layer for r in records}
        imp = self.config.importance
        for name, mod in weight_layers(model):
            if name in done:
                continue
            (cin, cout), out, inn = before[name], _out_size(mod), _in_size(mod)
            extra = {"in_before": cin, "in_after": inn}
            if out < cout:
                why = f"lowest-{imp} {cout - out} of {cout} {self.unit} removed (target ratio {ratios.get(name, 0):.2f})"
                records.append(LayerRecord(name, "pruned", self.unit, cout, out, why, extra))
            elif inn < cin:
                records.append(LayerRecord(name, "pruned", self.unit, cout, out,
                                           f"inputs shrunk {cin}->{inn} with the layer feeding it", extra))
            elif name in ratios and ratios[name] == 0:
                records.append(LayerRecord(name, "skipped", self.unit, cout, out, "ratio 0 for this layer", extra))
            else:
                records.append(LayerRecord(name, "skipped", self.unit, cout, out,
                                           "no channel removed (coupled group or ratio rounds to zero)", extra))
        return records
