"""``ss.prune``: one verb for every pruning config, dispatched through the prune registry."""

from __future__ import annotations

from typing import Any

from .._config import Config, Request
from .._utils import any_grad_mode, keeps_global_rng
from .._validate import check_tolerance
from ..errors import ConfigError
from ._registry import HANDLERS
from ._result import PruneResult

__all__ = ["prune"]


@keeps_global_rng
@any_grad_mode
def prune(model: Any, config: Config, *, example_inputs: Any = None, data: Any = None, val: Any = None,
          train: Any = None, calibration: Any = None, tolerance: float | None = None) -> PruneResult:
    """Prune ``model`` as ``config`` says and return a new model with a per-layer record.

    The input model is never modified. Unstructured and N:M results hold real zeros and save
    compactly; structured results are plain dense models with smaller layers (smaller and faster
    everywhere, exportable to ONNX); tree results have fewer nodes.

    Parameters
    ----------
    model : torch nn.Module, slimstack sentence encoder, or fitted scikit-learn tree/forest
    config : MagnitudePruning | NMPruning | StructuredPruning | TreePruning
        The registry picks the first handler for the config's type that applies to ``model``.
    example_inputs : array, tensor or list of sentences, optional
        Inputs to trace the model with (structured pruning); defaults to the first rows of
        ``calibration``, then of ``train``.
    train : Dataset, optional
        Training data for Taylor importance and recovery. ``data=`` is the older name of ``train=``.
    val : Dataset, optional
        Validation data for sensitivity analysis (``tolerance``) and for ``TreePruning``'s choice of
        ``ccp_alpha``; defaults to ``train``.
    calibration : Dataset, texts or token-id windows, optional
        Unlabelled rows to take example inputs from; for causal LMs (``WandaPruning``, ``LayerDrop``,
        ``WidthPruning``, and the LM handlers of the other configs) the text one forward pass reads
        to measure what to cut.
    tolerance : float in (0, 1), optional
        Largest loss of quality relative to the unpruned model, as in ``ss.quantize``: the configs that
        choose by quality take it (``StructuredPruning``'s per-layer sensitivity analysis,
        ``TreePruning``'s ``ccp_alpha``; the same as setting their own ``tolerance`` field). Scored on
        ``val``.

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
    if data is not None and train is not None:
        raise ConfigError("ss.prune got both data= and train=; data= is the older name of train=, pass only train=")
    check_tolerance(tolerance)
    request = Request(train=train if train is not None else data, val=val, calibration=calibration,
                      tolerance=tolerance, example_inputs=example_inputs, seed=getattr(config, "seed", 0))
    handler = HANDLERS.dispatch(config, model)
    if tolerance is not None and not getattr(handler, "uses_tolerance", False):
        takes = [c.__name__ for c in HANDLERS.configs()
                 if any(getattr(h, "uses_tolerance", False) for h in HANDLERS.handlers_of(c))]
        raise ConfigError(f"tolerance={tolerance} is not used by {type(config).__name__} on a {type(model).__name__} "
                          f"(it prunes exactly what the config says); the configs that choose by quality are "
                          f"{', '.join(takes)}")
    return handler.run(model, config, request)
