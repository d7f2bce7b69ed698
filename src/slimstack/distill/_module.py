"""Distilling into a torch module or a sentence encoder: the handler for every student but causal LMs."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._arch import is_causal_lm
from .._config import Request
from .._result import LayerRecord
from .._training import world
from .._utils import seed_everything, threads
from ..errors import ConfigError, ModelError
from ._config import DistillConfig
from ._data import Rows, as_rows, is_text_model
from ._objective import DistillObjective, resolve_loss
from ._registry import REGISTRY, DistillHandler, barrier
from ._teachers import ModuleTeacher, PrecomputedTeacher, as_teacher, teacher_targets

__all__ = ["ModuleDistillHandler", "TEXT_LR"]

TEXT_LR = 1e-4  # lr="auto" for sentence-encoder students


@REGISTRY.register(DistillConfig)
class ModuleDistillHandler(DistillHandler):
    """Output (and optionally hidden-layer) distillation into any torch module or sentence encoder.

    The teacher may be a module, a list of models (an ensemble), an estimator with ``predict_proba``
    or precomputed outputs; training data are arrays or sentences, labelled or not.
    """

    def applies_to(self, student: Any) -> str | None:
        if is_causal_lm(student):
            return "a causal-LM student learns next-token logits (the causal-LM handler)"
        if not isinstance(student, nn.Module):
            return f"the student must be a torch nn.Module, got {type(student).__name__}"
        return None

    def run(self, student: nn.Module, config: DistillConfig, request: Request) -> Any:
        teacher = request.options.get("teacher")
        if is_causal_lm(teacher):
            raise ModelError("the teacher is a causal LM, so the student must be one too, e.g. "
                             f"ss.zoo.shrink(teacher, layers=...); got {type(student).__name__}")
        rows = as_rows(request.train, "train")
        val_rows = as_rows(request.val, "val") if request.val is not None else None
        if rows.is_text != is_text_model(student):
            want = "a sentence encoder (with tokenize/encode)" if rows.is_text else "a module taking arrays"
            raise ModelError(f"the training data is {'sentences' if rows.is_text else 'arrays'}, so the student must "
                             f"be {want}")
        student = copy.deepcopy(student)
        t = as_teacher(teacher, rows.task)
        rank, world_size = world()
        t0 = time.perf_counter()
        with threads(config.threads):
            seed_everything(config.seed)
            summary: dict[str, Any] = {"teacher_output": t.output}
            targets = None
            if config.augment != "none":
                _check_augment(config, rows, t)
                summary.update(teacher=type(t).__name__, cache=None,
                               teacher_live=f"augment={config.augment!r}: the teacher labels every augmented batch")
            elif not config.features:
                targets, info = teacher_targets(t, rows, cache_dir=config.cache_dir, rank=rank,
                                                barrier=barrier(world_size))
                summary.update(info)
            else:
                summary.update(teacher=type(t).__name__, cache=None, teacher_live="feature matching needs the live teacher")
            summary["teacher_seconds"] = round(time.perf_counter() - t0, 3)
            loss = resolve_loss(config, t)
            seed_everything(config.seed)
            objective = DistillObjective(student, t, rows, targets, config, loss)
            evaluate = _evaluator(student, t, val_rows, objective) if val_rows is not None else None
            # Transformers fine-tune at small rates, and a range test would cost as much as their training.
            lr = TEXT_LR if config.lr == "auto" and rows.is_text else config.lr
            identity = (rows.content_hash(), len(rows), world_size, ModuleTeacher(student).fingerprint(rows))
            try:
                history, trained = self.fit(objective, len(rows), config, request, lr=lr, identity=identity,
                                            evaluate=evaluate)
            finally:
                objective.close()
        summary.update(loss=loss, augment=config.augment, **trained, rows=len(rows))
        dropped = []
        if config.features:
            summary["features"] = [list(p) for p in config.features]
            summary["projections_dropped"] = [str(objective.projections[str(i)]) for i in range(len(config.features))]
            dropped = [LayerRecord(f"projection {i}: {s} -> {t_}", "dropped", reason=(
                "maps the student layer's width to the teacher layer's during training; not part of the student"),
                extra={"module": summary["projections_dropped"][i]}) for i, (s, t_) in enumerate(config.features)]
        return self.result(student, history, summary, t0, dropped)


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


def _evaluator(student: nn.Module, teacher: Any, val: Rows, objective: DistillObjective) -> Callable[[], float]:
    """A higher-is-better validation score for early stopping and best-epoch selection.

    Labelled data (classification, regression, scored sentence pairs) is scored by
    ``ss.measure.score``, as everywhere else; unlabelled rows by fidelity to the teacher.
    """
    ds = val.dataset
    scored = ds is not None and ((val.labels is not None and val.task in ("classification", "regression"))
                                 or (val.is_text and ds.pairs is not None and ds.scores is not None))
    if scored:
        from ..measure import score

        return lambda: score(student, ds)
    target, _ = teacher_targets(teacher, val)

    def fidelity() -> float:
        out = torch.as_tensor(_predict(student, val))
        return -float(objective._output_loss(out.reshape(target.shape), target, None)["loss"])

    return fidelity


@torch.no_grad()
def _predict(student: nn.Module, rows: Rows, batch_size: int = 512) -> Any:
    was = student.training
    student.eval()
    try:
        if rows.is_text:
            return student.encode(rows.texts, batch_size=128)
        outs = [student(torch.as_tensor(rows.X[i : i + batch_size])) for i in range(0, len(rows), batch_size)]
        return torch.cat(outs).numpy()
    finally:
        student.train(was)
