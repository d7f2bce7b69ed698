"""The StructuredPruning handler: channels and neurons of networks, heads and FFN neurons of transformers."""

from __future__ import annotations

from typing import Any

from .._arch import find_stack
from .._config import Request
from ..errors import ConfigError
from ._common import check_ignore, copy_model, count_params, example_inputs_for, is_torch_encoder
from ._configs import StructuredPruning
from ._eval import tolerance_for
from ._recovery import recover
from ._registry import HANDLERS, TorchHandler
from ._result import PruneResult
from ._sensitivity import ratios_within

__all__ = ["StructuredHandler"]


@HANDLERS.register(StructuredPruning)
class StructuredHandler(TorchHandler):
    """Torch-Pruning's dependency graph for networks; slimstack's own head/FFN cutting for transformer stacks.

    ``request.example_inputs`` (or the first rows of ``calibration``, then ``train``) traces the model;
    ``train`` feeds Taylor importance and recovery; ``val`` (or ``train``) scores the sensitivity
    analysis when a tolerance is set (``ss.prune(tolerance=...)`` or the config's own).
    """

    uses_tolerance = True

    def run(self, model: Any, config: StructuredPruning, request: Request) -> PruneResult:
        from ._structured import TorchBackend
        from ._transformer import EncoderBackend

        pruned = copy_model(model)
        check_ignore(pruned, config.ignore)
        if config.layer_ratios:
            check_ignore(pruned, tuple(config.layer_ratios), field="layer_ratios")
        transformer = is_torch_encoder(pruned) or find_stack(pruned, what="StructuredPruning") is not None
        rows = request.calibration if request.calibration is not None else request.train
        example = example_inputs_for(pruned, request.example_inputs, rows)
        backend = (EncoderBackend if transformer else TorchBackend)(pruned, config, example, request.train)
        params_before = count_params(pruned)[0]
        ratios = dict(backend.units)
        analysis = None
        rule = tolerance_for(config.tolerance_rule, request.tolerance, config)
        if rule is not None:
            tolerance, relative = rule
            judge = request.val if request.val is not None else request.train
            if judge is None:
                field = "tolerance" if relative else "absolute_tolerance"
                raise ConfigError(f"{field}={tolerance} measures quality per layer; pass val=ds_val (or data=ds)")
            ratios, analysis = ratios_within(pruned, backend, judge, tolerance, config.sensitivity_ratios,
                                             relative=relative)
        records = backend.apply(pruned, ratios)
        history = recover(pruned, model, config, request.train)
        summary = {"config": config.to_dict(), "params_before": params_before, "params": count_params(pruned)[0],
                   "ratios": ratios, "recovery": history}
        if analysis is not None:
            summary["sensitivity"] = analysis
        return PruneResult(pruned.eval(), records, summary)
