"""``ss.distill``: train a student to reproduce a teacher (or an ensemble of teachers)."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .._utils import any_grad_mode, keeps_global_rng, seed_everything, threads
from ..errors import ConfigError, ModelError
from ._config import DistillConfig
from ._data import Rows, as_rows, is_text_model
from ._objective import DistillObjective, resolve_loss
from ._teachers import ModuleTeacher, PrecomputedTeacher, as_teacher, teacher_targets
from ._trainer import Trainer, TrainSettings, fingerprint, world

__all__ = ["distill", "DistillResult"]


@dataclasses.dataclass
class DistillResult:
    """The trained student, its per-epoch history, and a record of what was done.

    ``history`` holds one dict per epoch: ``epoch``, ``step``, ``loss`` and its parts (``kd``,
    ``ce``, ``cosine``, ``mse``, ``feat0``...), ``lr``, ``seconds`` and ``val`` (with ``val`` data).
    ``record`` says which loss and teacher ran, whether cached teacher outputs were reused, the best
    epoch, why training stopped, and the number of processes.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    record: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"history": self.history, "record": self.record}


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

    Parameters
    ----------
    teacher : nn.Module, list of models, estimator with ``predict_proba``, or array
        One model; a list of models (an ensemble: the mean of their probabilities); any object with
        ``predict_proba`` (scikit-learn models, slimstack ensembles); or precomputed outputs, one row
        per training row. Set ``config.cache_dir`` to compute a teacher's outputs once and reuse them.
    student : nn.Module
        Any module with the same input convention as the teacher, e.g. ``ss.zoo.shrink(teacher, ...)``.
        It is copied first: the module you pass is left as it was.
    config : DistillConfig
        Loss, temperature, alpha, training settings (defaults: ``DistillConfig()``).
    train : Dataset, array, or list of sentences
        Labels are optional: without them (or for sentence data) the teacher's outputs are the only
        targets, so unlabelled data works.
    val : Dataset, optional
        Scored after every epoch (accuracy, STS Spearman, -MSE, or fidelity to the teacher for
        unlabelled data); the best epoch's weights are returned, and ``config.patience`` stops early.
    on_epoch_end : callable, optional
        Called with each epoch's history record.

    Examples
    --------
    >>> train = ss.datasets.load("digits", split="train")
    >>> teacher = ss.zoo.train(ss.zoo.digits_cnn(), train)                       # doctest: +SKIP
    >>> d = ss.distill(teacher, ss.zoo.shrink(teacher, width=0.25),
    ...                ss.DistillConfig(temperature=4.0, alpha=0.5, epochs=20), train=train)  # doctest: +SKIP
    >>> d.model, d.history[-1]["loss"]                                          # doctest: +SKIP
    """
    config = DistillConfig() if config is None else config
    if not isinstance(config, DistillConfig):
        raise ConfigError(f"ss.distill takes a DistillConfig, got {type(config).__name__}; e.g. ss.DistillConfig(epochs=20)")
    if not isinstance(student, nn.Module):
        raise ModelError(f"the student must be a torch nn.Module, got {type(student).__name__}")
    from ._lm import distill_lm, is_causal_lm

    if is_causal_lm(student) or is_causal_lm(teacher):  # next-token logit distillation on text (_lm.py)
        return distill_lm(teacher, student, config, train=train, val=val, on_epoch_end=on_epoch_end)
    rows = as_rows(train, "train")
    val_rows = as_rows(val, "val") if val is not None else None
    if rows.is_text != is_text_model(student):
        want = "a sentence encoder (with tokenize/encode)" if rows.is_text else "a module taking arrays"
        raise ModelError(f"the training data is {'sentences' if rows.is_text else 'arrays'}, so the student must be {want}")
    student = copy.deepcopy(student)
    t = as_teacher(teacher, rows.task)
    rank, world_size = world()
    t0 = time.perf_counter()
    with threads(config.threads):
        seed_everything(config.seed)
        record: dict[str, Any] = {"teacher_output": t.output}
        targets = None
        if config.augment != "none":
            _check_augment(config, rows, t)
            record.update(teacher=type(t).__name__, cache=None,
                          teacher_live=f"augment={config.augment!r}: the teacher labels every augmented batch")
        elif not config.features:
            barrier = _barrier() if world_size > 1 else None
            targets, info = teacher_targets(t, rows, cache_dir=config.cache_dir, rank=rank, barrier=barrier)
            record.update(info)
        else:
            record.update(teacher=type(t).__name__, cache=None, teacher_live="feature matching needs the live teacher")
        record["teacher_seconds"] = round(time.perf_counter() - t0, 3)
        loss = resolve_loss(config, t)
        seed_everything(config.seed)
        objective = DistillObjective(student, t, rows, targets, config, loss)
        evaluate = _evaluator(student, t, val_rows, objective) if val_rows is not None else None
        # Transformers fine-tune at small rates, and a range test would cost as much as their training.
        lr = TEXT_LR if config.lr == "auto" and rows.is_text else config.lr
        settings = TrainSettings.from_config(
            config, lr=lr,
            fingerprint=fingerprint({k: v for k, v in config.to_dict()["data"].items() if k not in _RUN_ONLY},
                                    rows.content_hash(), len(rows), world_size,
                                    ModuleTeacher(student).fingerprint(rows)))
        seed_everything(config.seed)
        trainer = Trainer(objective, len(rows), settings, evaluate=evaluate, on_epoch_end=on_epoch_end)
        try:
            history = trainer.fit()
        finally:
            objective.close()
    student.eval()
    record.update(loss=loss, augment=config.augment, **trainer.record, rows=len(rows), total_seconds=round(time.perf_counter() - t0, 3))
    if config.features:
        record["features"] = [list(p) for p in config.features]
        record["projections_dropped"] = [str(objective.projections[str(i)]) for i in range(len(config.features))]
    return DistillResult(model=student, history=history, record=record)


TEXT_LR = 1e-4  # lr="auto" for sentence-encoder students

# Settings that change how a run is watched or stored, not what it computes: a resume may differ in them.
_RUN_ONLY = {"progress", "resume", "checkpoint_dir", "cache_dir", "threads"}


def _check_augment(config: DistillConfig, rows: Rows, teacher: Any) -> None:
    if rows.is_text:
        raise ConfigError(
            f"DistillConfig.augment={config.augment!r} perturbs array inputs, but the training data is sentences; "
            "use augment='none' for text (or add paraphrased sentences to the training data)"
        )
    if isinstance(teacher, PrecomputedTeacher):
        raise ConfigError(
            f"DistillConfig.augment={config.augment!r} needs the teacher on new inputs, but precomputed outputs "
            "cover the training rows only; pass the teacher model itself, or set augment='none'"
        )


def _barrier() -> Callable[[], None]:
    import torch.distributed as dist

    return dist.barrier


def _evaluator(student: nn.Module, teacher: Any, val: Rows, objective: DistillObjective) -> Callable[[], float]:
    """A higher-is-better validation score for early stopping and best-epoch selection."""
    ds = val.dataset
    if val.is_text and ds is not None and ds.pairs is not None and ds.scores is not None:
        from scipy.stats import spearmanr

        left = [a for a, _ in ds.pairs]
        right = [b for _, b in ds.pairs]

        def sts() -> float:
            a, b = student.encode(left), student.encode(right)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
            return float(spearmanr(cos, ds.scores).statistic)

        return sts
    if val.labels is not None and val.task == "classification":
        return lambda: float((_predict(student, val).argmax(-1) == val.labels).mean())
    if val.labels is not None and val.task == "regression":
        return lambda: -float(((_predict(student, val).reshape(len(val)) - val.labels) ** 2).mean())
    # Unlabelled validation rows: fidelity to the teacher (negative output loss).
    target, _ = teacher_targets(teacher, val)

    def fidelity() -> float:
        out = torch.as_tensor(_predict(student, val))
        return -float(objective._output_loss(out.reshape(target.shape), target, None)["loss"])

    return fidelity


@torch.no_grad()
def _predict(student: nn.Module, rows: Rows, batch_size: int = 512) -> np.ndarray:
    was = student.training
    student.eval()
    try:
        if rows.is_text:
            return student.encode(rows.texts, batch_size=128)
        outs = [student(torch.as_tensor(rows.X[i : i + batch_size])) for i in range(0, len(rows), batch_size)]
        return torch.cat(outs).numpy()
    finally:
        student.train(was)
