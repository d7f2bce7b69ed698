"""The distill registry and what its handlers share.

``ss.distill`` dispatches only here: :data:`REGISTRY` maps ``DistillConfig`` to its handlers, and
the first whose ``applies_to(student)`` accepts the student runs (causal LMs: next-token logit
distillation, ``_lm.py``; every other torch module, sentence encoders included: ``_module.py``).
:class:`DistillHandler` holds the steps every handler takes the same way: the training settings
and checkpoint fingerprint, the shared training loop, and the :class:`DistillResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from .._config import Handler, Registry, Request
from .._result import LayerRecord
from .._training import Trainer, TrainSettings, fingerprint, make_optimizer
from .._utils import seed_everything
from ._config import DistillConfig
from ._lr_range import RUNGS, probe_steps, range_test
from ._result import DistillResult, trained_records

__all__ = ["REGISTRY", "DistillHandler", "barrier"]

REGISTRY = Registry("distill")

# Settings that change how a run is watched or stored, not what it computes: a resume may differ in them.
RUN_ONLY = {"progress", "resume", "checkpoint_dir", "cache_dir", "threads"}


class DistillHandler(Handler):
    """Base of the distill handlers: subclasses implement ``applies_to`` and ``run``.

    ``run(student, config, request)`` gets the teacher as ``request.options["teacher"]`` (and the
    caller's ``on_epoch_end``), builds an objective (an ``nn.Module`` whose ``forward(idx)`` returns
    the loss parts on training rows ``idx``) and calls :meth:`fit` and :meth:`result`.
    """

    config: ClassVar[type] = DistillConfig
    backends: ClassVar[tuple[str, ...]] = ("torch",)

    def fit(self, objective: nn.Module, n_rows: int, config: DistillConfig, request: Request, *, lr: float | str,
            identity: tuple[Any, ...], evaluate: Callable[[], float] | None = None) -> tuple[list[dict[str, Any]],
                                                                                         dict[str, Any]]:
        """Train ``objective`` with the shared loop: ``(history, the trainer's record)``.

        ``identity`` (data hash, models' fingerprints, world size) ties a checkpoint to this run.
        """
        settings = TrainSettings.from_config(
            config, lr=lr, name="distill",
            fingerprint=fingerprint({k: v for k, v in config.to_dict()["data"].items() if k not in RUN_ONLY},
                                    *identity))
        seed_everything(config.seed)
        trainer = Trainer(objective, n_rows, settings, evaluate=evaluate, lr_search=lr_range_search,
                          on_epoch_end=request.options.get("on_epoch_end"))
        history = trainer.fit()
        return history, trainer.record

    def result(self, student: nn.Module, history: list[dict[str, Any]], summary: dict[str, Any], started: float,
               extra: list[LayerRecord] | None = None) -> DistillResult:
        """The result: the student in eval mode, one record per layer, the summary with the total time."""
        student.eval()
        summary["total_seconds"] = round(time.perf_counter() - started, 3)
        return DistillResult(student, trained_records(student) + list(extra or []), summary, history)


def barrier(world_size: int) -> Callable[[], None] | None:
    """What ranks wait at while rank 0 writes the teacher cache (None in a single process)."""
    if world_size <= 1:
        return None
    import torch.distributed as dist

    return dist.barrier


def lr_range_search(objective: nn.Module, n_rows: int, settings: TrainSettings, total: int) -> tuple[float, dict]:
    """``lr="auto"``: the short range test of ``_lr_range`` with the run's own optimizer."""
    steps = probe_steps(total)
    lr, table = range_test(objective, n_rows, settings.batch_size,
                           lambda params, rate: make_optimizer(settings.optimizer, params, rate, settings.weight_decay),
                           steps=steps, seed=settings.seed, grad_clip=settings.grad_clip)
    return lr, {"lr_range_test": {"steps_per_rung": steps, "rungs": RUNGS, "probe_steps": sum(r["steps"] for r in table),
                                  "candidates": table}}
