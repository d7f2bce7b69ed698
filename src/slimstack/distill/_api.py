"""``ss.distill``: train a student to reproduce a teacher (or an ensemble of teachers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .._config import Request
from .._utils import any_grad_mode, keeps_global_rng
from ._config import DistillConfig
from ._registry import REGISTRY
from ._result import DistillResult

__all__ = ["distill"]


@keeps_global_rng
@any_grad_mode
def distill(
    teacher: Any,
    student: nn.Module,
    config: DistillConfig | None = None,
    *,
    train: Any,
    val: Any = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> DistillResult:
    """Train ``student`` to reproduce ``teacher`` on ``train``; return a new, trained student.

    The student picks the handler (``slimstack.distill.REGISTRY``): a causal LM learns the
    teacher's next-token distribution on text; any other torch module (sentence encoders included)
    learns the teacher's outputs, and optionally its hidden layers.

    Parameters
    ----------
    teacher : nn.Module, list of models, estimator with ``predict_proba``, or array
        One model; a list of models (an ensemble: the mean of their probabilities); any object with
        ``predict_proba`` (scikit-learn models, slimstack ensembles); or precomputed outputs, one row
        per training row. Set ``config.cache_dir`` to compute a teacher's outputs once and reuse them.
        For a causal-LM student, a causal LM with the same vocabulary.
    student : nn.Module
        Any module with the same input convention as the teacher, e.g. ``ss.zoo.shrink(teacher, ...)``.
        It is copied first: the module you pass is left as it was.
    config : DistillConfig
        Loss, temperature, alpha, training settings (defaults: ``DistillConfig()``).
    train : Dataset, array, list of sentences, or text
        Labels are optional: without them (or for sentence data) the teacher's outputs are the only
        targets, so unlabelled data works. A causal LM trains on a task ``"lm"`` Dataset or texts.
    val : Dataset, optional
        Scored on the starting weights and after every epoch (``ss.measure.score``: accuracy, R^2,
        STS Spearman; fidelity to the teacher for unlabelled data; the top-k KL for causal LMs); the
        best epoch's weights are returned, and ``config.patience`` stops early.
    on_epoch_end : callable, optional
        Called with each epoch's history record.

    Returns
    -------
    DistillResult
        ``model`` (the trained student), ``records`` (one per student layer: trained or frozen),
        ``summary`` (also ``record``: loss, teacher, learning rate, best epoch, timings) and
        ``history`` (one dict per epoch).

    Examples
    --------
    >>> train = ss.datasets.load("digits", split="train")
    >>> teacher = ss.zoo.train(ss.zoo.digits_cnn(), train)                       # doctest: +SKIP
    >>> d = ss.distill(teacher, ss.zoo.shrink(teacher, width=0.25),
    ...                ss.DistillConfig(temperature=4.0, alpha=0.5, epochs=20), train=train)  # doctest: +SKIP
    >>> d.model, d.history[-1]["loss"]                                          # doctest: +SKIP
    """
    config = DistillConfig() if config is None else config
    request = Request(train=train, val=val, seed=getattr(config, "seed", 0),
                      options={"teacher": teacher, "on_epoch_end": on_epoch_end})
    return REGISTRY.dispatch(config, student).run(student, config, request)
