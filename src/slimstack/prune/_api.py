"""``ss.prune``: one verb for every pruning config, looked up by the config's type."""

from __future__ import annotations

from typing import Any

from .._config import Config, Request, _FunctionHandler
from .._utils import any_grad_mode, keeps_global_rng
from ..errors import ConfigError
from ._common import check_ignore, copy_model, count_params, is_encoder
from ._configs import StructuredPruning
from ._recovery import recover
from ._registry import HANDLERS
from ._result import PruneResult
from ._sensitivity import ratios_within

__all__ = ["prune"]


@keeps_global_rng
@any_grad_mode
def prune(model: Any, config: Config, *, example_inputs: Any = None, data: Any = None, val: Any = None,
          calibration: Any = None) -> PruneResult:
    """Prune ``model`` as ``config`` says and return a new model with a per-layer record.

    The input model is never modified. Unstructured and N:M results hold real zeros and save
    compactly; structured results are plain dense models with smaller layers (smaller and faster
    everywhere, exportable to ONNX); tree results have fewer nodes.

    Parameters
    ----------
    model : torch nn.Module, slimstack sentence encoder, or fitted scikit-learn tree/forest
    config : MagnitudePruning | NMPruning | StructuredPruning | TreePruning
    example_inputs : array, tensor or list of sentences, optional
        Inputs to trace the model with (structured pruning); defaults to the first rows of ``data``.
    data : Dataset, optional
        Training data for Taylor importance and recovery; for ``TreePruning`` the validation data
        that picks ``ccp_alpha``.
    val : Dataset, optional
        Validation data for sensitivity analysis (``tolerance``); defaults to ``data``.
    calibration : texts, task-"lm" Dataset or token-id windows, optional
        Unlabelled text for causal-LM pruning (``WandaPruning``, ``LayerDrop``, ``WidthPruning``):
        one forward pass measures what to cut.

    Examples
    --------
    >>> import slimstack as ss
    >>> ds = ss.datasets.load("digits")
    >>> cnn = ss.zoo.train(ss.zoo.digits_cnn(), ds, epochs=2)
    >>> r = ss.prune(cnn, ss.StructuredPruning(ratio=0.5), example_inputs=ds.X[:2])
    >>> r.model.features[0].out_channels
    16
    """
    if not isinstance(config, Config):
        raise ConfigError(f"ss.prune takes a pruning config as its second argument, got {type(config).__name__}; "
                          "e.g. ss.prune(model, ss.StructuredPruning(ratio=0.5))")
    for h in HANDLERS.handlers_for(config):  # model-specific handlers first (causal LMs), then the general ones
        if not isinstance(h, _FunctionHandler) and h.applies_to(model) is None:
            request = Request(train=data, val=val, calibration=calibration, example_inputs=example_inputs,
                              seed=getattr(config, "seed", 0))
            return h.run(model, config, request)
    general = [h for h in HANDLERS.handlers_for(config) if isinstance(h, _FunctionHandler)]
    if not general:
        HANDLERS.dispatch(config, model)  # raises ModelError with every handler's reason
    return general[0].fn(model, config, example_inputs=example_inputs, data=data, val=val)


@HANDLERS.register(StructuredPruning)
def prune_structured(model: Any, config: StructuredPruning, *, example_inputs: Any = None, data: Any = None,
                     val: Any = None) -> PruneResult:
    from ._structured import TorchBackend
    from ._transformer import EncoderBackend

    pruned = copy_model(model)
    check_ignore(pruned, config.ignore)
    if config.layer_ratios:
        check_ignore(pruned, tuple(config.layer_ratios), field="layer_ratios")
    from .._arch import find_stack

    transformer = is_encoder(pruned) or find_stack(pruned, what="StructuredPruning") is not None
    backend = (EncoderBackend if transformer else TorchBackend)(pruned, config, example_inputs, data)
    params_before = count_params(pruned)[0]
    ratios = dict(backend.units)
    analysis = None
    if config.tolerance is not None:
        judge = val if val is not None else data
        if judge is None:
            raise ConfigError(f"tolerance={config.tolerance} measures quality per layer; pass val=ds_val (or data=ds)")
        ratios, analysis = ratios_within(pruned, backend, judge, config.tolerance, config.sensitivity_ratios)
    records = backend.apply(pruned, ratios)
    history = recover(pruned, model, config, data)
    summary = {"config": config.to_dict(), "params_before": params_before, "params": count_params(pruned)[0],
               "ratios": ratios, "recovery": history}
    if analysis is not None:
        summary["sensitivity"] = analysis
    return PruneResult(pruned.eval(), records, summary)
