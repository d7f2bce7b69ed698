"""One handler per merge rule, registered by config type and known by its method name.

Every handler runs the same pipeline (:meth:`MergeHandler.run`): check the models share an
architecture, let the rule combine the parameter arrays (:meth:`MergeHandler.merge_arrays`),
average float buffers, build the merged model, recalibrate BatchNorm if asked, and record every
tensor. Adding a rule is one config, one handler subclass here and its registration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from .._config import Handler, Registry, Request
from ..errors import ConfigError, DataError
from . import _methods
from ._adapters import Weights, as_xy, build, check_compatible, family_problem, has_batchnorm, make_evaluator
from ._adapters import recalibrate_batchnorm
from ._configs import GreedySoup, MergeConfig, TaskArithmetic, TiesMerging, UniformSoup
from ._result import LayerRecord, MergeResult

__all__ = ["MERGERS", "METHODS", "NEEDS_BASE", "MergeHandler", "MergeInputs"]

MERGERS = Registry("merge")
METHODS: dict[str, type[MergeConfig]] = {}  # method name -> config class, filled by @_method
NEEDS_BASE: list[type[MergeConfig]] = []  # configs whose rule merges task vectors from a common base


def _method(config_cls: type[MergeConfig], name: str, *, needs_base: bool = False, needs_data: str = ""):
    """Register a handler class for ``config_cls`` under the method ``name`` (a valid ``method=``)."""

    def deco(handler_cls: type[MergeHandler]) -> type[MergeHandler]:
        handler_cls.method, handler_cls.needs_base, handler_cls.needs_data = name, needs_base, needs_data
        METHODS[name] = config_cls
        if handler_cls.needs_base:
            NEEDS_BASE.append(config_cls)
        return MERGERS.register(config_cls)(handler_cls)

    return deco


@dataclasses.dataclass
class MergeInputs:
    """What a rule sees: the template, base and member weights, validation data, the summary to fill."""

    template: Any
    base: Weights | None
    models: list[Weights]
    data: Any
    scoring: Callable[[Any, Any, Any], float] | None
    summary: dict[str, Any]

    def evaluator(self) -> Callable[[dict[str, np.ndarray]], float]:
        return make_evaluator(self.template, self.data, self.scoring)


class MergeHandler(Handler):
    """Base of the merge handlers; ``run(models, config, request)`` with ``request.val`` the validation
    data and ``request.options`` holding ``base`` and ``scoring``."""

    method: ClassVar[str]  # the name ss.merge(models, method=...) takes
    needs_base: ClassVar[bool] = False
    needs_data: ClassVar[str] = ""  # why the rule needs validation data, when it always does
    backends: ClassVar[tuple[str, ...]] = ("torch", "sklearn")

    def applies_to(self, models: Any) -> str | None:
        for m in models:
            why = family_problem(m)
            if why is not None:
                return why
        return None

    def merge_arrays(self, config: MergeConfig, inputs: MergeInputs) -> dict[str, np.ndarray]:
        raise NotImplementedError(type(self).__name__)

    def run(self, models: Sequence[Any], config: MergeConfig, request: Request) -> MergeResult:
        base, data, scoring = request.options.get("base"), request.val, request.options.get("scoring")
        self._check(config, base, data)
        everything = ([base] if self.needs_base else []) + list(models)
        labels = (["base"] if self.needs_base else []) + [f"model {i}" for i in range(len(models))]
        weights = check_compatible(everything, labels)
        base_w, model_w = (weights[0], weights[1:]) if self.needs_base else (None, weights)
        summary: dict[str, Any] = {"method": type(config).__name__, "config": config.to_dict(),
                                   "n_models": len(models), "family": model_w[0].family,
                                   "params_merged": len(model_w[0].params)}
        arrays = self.merge_arrays(config, MergeInputs(everything[0], base_w, model_w, data, scoring, summary))
        _average_buffers(arrays, model_w, summary)
        merged = build(everything[0], arrays)
        recalibrated = config.batchnorm == "recalibrate" and has_batchnorm(merged)
        if config.batchnorm == "recalibrate":
            if recalibrated:
                X, _, _ = as_xy(data, model_w[0].family)
                n = recalibrate_batchnorm(merged, X)
                summary["batchnorm"] = f"running statistics of {n} BatchNorm layers recomputed on data ({len(X)} rows)"
            else:
                summary["batchnorm"] = "recalibrate asked, but the model has no BatchNorm layers: nothing to do"
        merged.merge_record_ = summary
        return MergeResult(merged, self._records(model_w[0], summary, recalibrated), summary)

    def _check(self, config: MergeConfig, base: Any, data: Any) -> None:
        name = type(config).__name__
        if self.needs_base and base is None:
            raise ConfigError(f"{name} needs base=: the model the others were fine-tuned from, since it merges "
                              "their differences from it (task vectors)")
        if not self.needs_base and base is not None:
            raise ConfigError(f"{name} does not use base=; drop it, or use method='task_arithmetic' or 'ties'")
        if self.needs_data and data is None:
            raise DataError(f"{self.method} {self.needs_data}; pass data=(X_val, y_val) or a Dataset")
        if config.batchnorm == "recalibrate" and data is None:
            raise DataError("batchnorm='recalibrate' recomputes BatchNorm statistics from data; pass data=")

    def describe(self, summary: dict[str, Any]) -> str:
        """The reason recorded on every merged parameter."""
        return f"{self.method} of {summary['n_models']} models"

    def _records(self, ref: Weights, summary: dict[str, Any], recalibrated: bool) -> list[LayerRecord]:
        why = self.describe(summary)
        conflicts = summary.get("ties", {}).get("sign_conflicts_per_tensor", {})
        records = []
        for name in ref.params:
            extra = {"sign_conflicts": conflicts[name]} if name in conflicts else {}
            records.append(LayerRecord(name, "merged", "weights", ref.arrays[name].size, ref.arrays[name].size,
                                       why, extra))
        for name in ref.buffers:
            action, how = (("recalibrated", "recomputed on data") if recalibrated and "running" in name
                           else ("averaged", "averaged over the merged models"))
            records.append(LayerRecord(name, action, "values", ref.arrays[name].size, ref.arrays[name].size, how))
        for name in ref.fixed:
            records.append(LayerRecord(name, "kept", "values", ref.arrays[name].size, ref.arrays[name].size,
                                       "non-float entry: taken from the template"))
        return records


def _average_buffers(arrays: dict[str, np.ndarray], model_w: Sequence[Weights], summary: dict[str, Any]) -> None:
    """Float buffers are averaged over the merged models; fixed entries come from the template."""
    kept = summary.get("greedy_soup", {}).get("kept", range(len(model_w)))
    for name in model_w[0].buffers:
        arrays[name] = np.mean([model_w[i].arrays[name] for i in kept], axis=0)
    if model_w[0].buffers:
        summary["batchnorm"] = f"{len(model_w[0].buffers)} float buffers averaged over the merged models"
    if model_w[0].fixed:
        summary["fixed_from_template"] = list(model_w[0].fixed)


@_method(UniformSoup, "uniform")
class UniformSoupHandler(MergeHandler):
    """Every parameter averaged over the models."""

    def merge_arrays(self, config: UniformSoup, inputs: MergeInputs) -> dict[str, np.ndarray]:
        return _methods.uniform_soup([w.arrays for w in inputs.models], inputs.models[0].params)


@_method(GreedySoup, "greedy_soup", needs_data="ranks and adds ingredients by validation score")
class GreedySoupHandler(MergeHandler):
    """Ingredients added best-first while the soup's validation score improves."""

    def merge_arrays(self, config: GreedySoup, inputs: MergeInputs) -> dict[str, np.ndarray]:
        ref = inputs.models[0]
        keys = ref.params + ref.buffers  # buffers follow their ingredients while scoring
        evaluate = inputs.evaluator()
        full = {**ref.arrays}
        soup, info = _methods.greedy_soup([w.arrays for w in inputs.models], lambda s: evaluate({**full, **s}), keys)
        inputs.summary["greedy_soup"] = info
        return {k: soup[k] for k in ref.params}

    def describe(self, summary: dict[str, Any]) -> str:
        kept = summary["greedy_soup"]["kept"]
        return f"greedy soup: mean of models {kept} ({len(kept)} of {summary['n_models']} kept)"


@_method(TaskArithmetic, "task_arithmetic", needs_base=True)
class TaskArithmeticHandler(MergeHandler):
    """``base + scaling * sum(task vectors)``, scaling given, tuned on data, or 1/n."""

    def merge_arrays(self, config: TaskArithmetic, inputs: MergeInputs) -> dict[str, np.ndarray]:
        states, keys, base = [w.arrays for w in inputs.models], inputs.models[0].params, inputs.base.arrays
        summary = inputs.summary
        if config.scaling is not None:
            scaling, how = float(config.scaling), "given"
        elif inputs.data is None:
            scaling, how = 1.0 / len(states), "1/n_models (no data= to tune it on)"
        else:
            evaluate = inputs.evaluator()
            buffers = _methods.uniform_soup(states, inputs.models[0].buffers) if inputs.models[0].buffers else {}
            scores = {s: evaluate({**base, **buffers, **_methods.task_arithmetic(base, states, s, keys)})
                      for s in config.scaling_grid}
            scaling = max(scores, key=lambda s: (scores[s], -s))
            how = "best on data"
            summary["scaling_scores"] = {str(s): v for s, v in scores.items()}
        summary["scaling"] = scaling
        summary["scaling_chosen"] = how
        return _methods.task_arithmetic(base, states, scaling, keys)

    def describe(self, summary: dict[str, Any]) -> str:
        return f"base + {summary['scaling']:.3g} x sum of {summary['n_models']} task vectors"


@_method(TiesMerging, "ties", needs_base=True)
class TiesHandler(MergeHandler):
    """Trimmed task vectors, elected signs, agreeing entries averaged."""

    def merge_arrays(self, config: TiesMerging, inputs: MergeInputs) -> dict[str, np.ndarray]:
        merged, info = _methods.ties_merge(inputs.base.arrays, [w.arrays for w in inputs.models], config.density,
                                           config.scaling, inputs.models[0].params)
        inputs.summary["ties"] = info
        return merged

    def describe(self, summary: dict[str, Any]) -> str:
        d = summary["config"]["data"]
        return (f"TIES: {d['density']:.0%} of each task vector kept, signs elected, agreeing entries averaged, "
                f"scaled by {d['scaling']:g}")
