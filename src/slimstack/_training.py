"""The one supervised training loop: it minimises whatever ``objective(idx)["loss"]`` returns.

Every technique that trains builds an *objective*, an ``nn.Module`` that owns the trainable
parameters and whose ``forward(idx)`` returns ``{"loss": ..., <parts>}`` on training rows ``idx``,
and hands it to :class:`Trainer`: ``ss.zoo.train`` and QAT (:class:`SupervisedObjective`),
pruning recovery (the same, plus distillation from the unpruned model), ``ss.distill`` (its
distillation objectives). The trainer knows nothing about teachers or losses. It owns the
optimizer and schedule (both small registries, :data:`OPTIMIZERS` and :data:`SCHEDULES`), the
batch order, early stopping and best-epoch selection on a validation score, atomic checkpoints and
resume, the progress bar, and multi-process data parallelism: launched under ``torchrun`` with
``distributed=True`` it joins a gloo process group, wraps the objective in
``DistributedDataParallel`` and gives each process its share of every global batch.
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._utils import atomic_file
from ._validate import Choices, check_choice
from .errors import ConfigError, DataError, SlimstackError

__all__ = ["OPTIMIZERS", "ORDERS", "SCHEDULES", "Trainer", "TrainSettings",
           "TrainingDivergedError", "fingerprint", "make_optimizer", "world"]

CHECKPOINT = "checkpoint.pt"


class TrainingDivergedError(SlimstackError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# The optimizers and learning-rate schedules a run may name; register more with ``.register(name, fn)``.
OPTIMIZERS: Choices[Callable[..., torch.optim.Optimizer]] = Choices("optimizer")
OPTIMIZERS.register("adamw", lambda params, lr, weight_decay: torch.optim.AdamW(params, lr=lr,
                                                                                 weight_decay=weight_decay))
OPTIMIZERS.register("sgd", lambda params, lr, weight_decay: torch.optim.SGD(params, lr=lr, momentum=0.9,
                                                                             weight_decay=weight_decay))

# A schedule maps (step after warmup, steps after warmup, steps per epoch) to the share of the peak rate.
SCHEDULES: Choices[Callable[[int, int, int], float]] = Choices("schedule")
SCHEDULES.register("cosine", lambda step, total, per_epoch: 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / total))))
SCHEDULES.register("linear", lambda step, total, per_epoch: 1.0 - min(1.0, step / total))
SCHEDULES.register("constant", lambda step, total, per_epoch: 1.0)
# Cosine over whole epochs (the rate changes between epochs only): what ss.zoo.train has always used.
SCHEDULES.register("epoch_cosine", lambda step, total, per_epoch: 0.5 * (1.0 + math.cos(
    math.pi * (step // per_epoch) / max(1, math.ceil(total / per_epoch)))))

# How each epoch's batch order is drawn: "reseeded" seeds epoch e with seed + e (ss.distill);
# "stream" draws every epoch from one generator seeded once (ss.zoo.train, QAT, pruning recovery).
ORDERS = ("reseeded", "stream")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """What the loop needs to know; :meth:`from_config` builds it from a ``DistillConfig``-like config.

    ``lr="auto"`` asks the ``lr_search`` the :class:`Trainer` was given (distillation's range test).
    ``distributed`` lets the run train data-parallel when launched under ``torchrun`` (False: every
    process trains alone). ``name`` labels the progress bar.
    """

    epochs: int
    batch_size: int
    lr: float | str
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    schedule: str = "cosine"
    warmup: float = 0.0
    grad_clip: float | None = None
    max_steps: int | None = None
    patience: int | None = None
    checkpoint_dir: str | None = None
    resume: bool = True
    seed: int = 0
    progress: bool = False
    fingerprint: str = ""  # a resume only continues a checkpoint written by the same settings
    order: str = "reseeded"
    distributed: bool = True
    name: str = "train"

    def __post_init__(self) -> None:
        OPTIMIZERS.check("TrainSettings.optimizer", self.optimizer)
        SCHEDULES.check("TrainSettings.schedule", self.schedule)
        check_choice("TrainSettings.order", self.order, ORDERS)

    @classmethod
    def from_config(cls, config: Any, *, lr: float | str, fingerprint: str, **overrides: Any) -> TrainSettings:
        """The loop's settings from a config with these fields, with the run's own rate and fingerprint."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("lr", "fingerprint", *overrides)]
        values = {n: getattr(config, n) for n in names if hasattr(config, n)}
        return cls(lr=lr, fingerprint=fingerprint, **values, **overrides)


def world() -> tuple[int, int]:
    """``(rank, world_size)``; joins a gloo process group when launched by ``torchrun``."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
        # A rank that exits while another still holds the group open can abort as gloo's threads
        # unwind ("terminate called without an active exception"), e.g. rank 1 leaving while rank 0
        # saves the student. Close the group slimstack opened together, at exit.
        atexit.register(_close_group)
    return dist.get_rank(), dist.get_world_size()


def _close_group() -> None:
    import datetime

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:  # wait (bounded) for the other ranks, so none tears down a connection another still uses
        dist.monitored_barrier(timeout=datetime.timedelta(seconds=120))
    except RuntimeError:
        pass  # a rank died or hung: close anyway
    dist.destroy_process_group()


class Trainer:
    """Train ``objective`` (an ``nn.Module`` whose ``forward(idx)`` returns a dict with ``"loss"``).

    Parameters
    ----------
    objective : nn.Module
        Holds every trainable parameter; ``forward(idx)`` computes the loss on rows ``idx``.
    n_rows : int
        Number of training rows; each epoch visits a seeded permutation of them.
    settings : TrainSettings
    evaluate : callable, optional
        ``evaluate() -> float`` (higher is better), run on rank 0 on the starting weights and after
        each epoch, for early stopping and to keep the best epoch's weights.
    on_epoch_end : callable, optional
        ``on_epoch_end(record)`` with the epoch's history record (raise to interrupt).
    after_step : callable, optional
        ``after_step(values)`` after every optimizer step, with the step's loss parts as floats
        (pruning recovery re-applies its masks here and keeps the per-step losses).
    lr_search : callable, optional
        ``lr_search(objective, n_rows, settings, total_steps) -> (lr, record)`` picks the rate for
        ``lr="auto"`` (distillation's range test); ``record`` goes into :attr:`record`.

    Examples
    --------
    >>> objective = SupervisedObjective(model, ss.datasets.load("digits", split="train"))   # doctest: +SKIP
    >>> Trainer(objective, len(objective), TrainSettings(epochs=5, batch_size=64, lr=3e-3)).fit()  # doctest: +SKIP
    """

    def __init__(self, objective: nn.Module, n_rows: int, settings: TrainSettings, *,
                 evaluate: Callable[[], float] | None = None,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
                 after_step: Callable[[dict[str, float]], None] | None = None,
                 lr_search: Callable[..., tuple[float, dict[str, Any]]] | None = None):
        self.objective = objective
        self.n_rows = int(n_rows)
        self.s = settings
        self.evaluate = evaluate
        self.on_epoch_end = on_epoch_end
        self.after_step = after_step
        self.lr_search = lr_search
        if self.n_rows < 1:
            raise DataError(f"{settings.name}: there are no training rows; pass at least one")
        self.rank, self.world_size = world() if settings.distributed else (0, 1)
        self._stream: tuple[int, torch.Generator] | None = None  # (next epoch, generator) for order="stream"
        if self.s.batch_size % self.world_size:
            raise ConfigError(
                f"batch_size={self.s.batch_size} is the global batch and must divide by the {self.world_size} "
                f"processes; use batch_size={self.s.batch_size - self.s.batch_size % self.world_size or self.world_size}"
            )
        self.local_batch = self.s.batch_size // self.world_size
        self.history: list[dict[str, Any]] = []
        self.record: dict[str, Any] = {"world_size": self.world_size}

    # ----------------------------------------------------------------- loop
    def fit(self) -> list[dict[str, Any]]:
        steps_per_epoch = math.ceil(self._rows_per_rank() / self.local_batch)
        total = self.s.epochs * steps_per_epoch
        if self.s.max_steps is not None:
            total = min(total, self.s.max_steps)
        ckpt = Path(self.s.checkpoint_dir) / CHECKPOINT if self.s.checkpoint_dir else None
        resuming = ckpt is not None and self.s.resume and ckpt.exists()
        lr = self._choose_lr(total, resuming)
        model = self._wrap()
        params = [p for p in self.objective.parameters() if p.requires_grad]
        opt = make_optimizer(self.s.optimizer, params, lr, self.s.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(self.s.schedule, self.s.warmup, total,
                                                                 steps_per_epoch))
        state = {"epoch": 0, "step": 0, "best": -math.inf, "best_epoch": None, "bad_epochs": 0, "stopped": None}
        best_weights: dict[str, torch.Tensor] | None = None
        if resuming:
            state, best_weights = self._load(ckpt, opt, sched)  # restores the run's learning rate too
            self.record["resumed_from_epoch"] = state["epoch"]
            self.record["lr"] = float(sched.base_lrs[0])
        elif self.evaluate is not None:
            # The starting weights are a candidate too: a student initialised from its teacher
            # (ss.zoo.shrink) can already be good, and training must not make it worse unnoticed.
            score = self._evaluate()
            self.history.append({"epoch": 0, "step": 0, "val": score})
            state.update(best=score, best_epoch=0)
            best_weights = copy.deepcopy(self.objective.state_dict())
        t0 = time.perf_counter()
        with _progress(self.s.progress and self.rank == 0, total, state["step"], self.s.name) as bar:
            while state["epoch"] < self.s.epochs and state["stopped"] is None:
                epoch = state["epoch"]
                sums: dict[str, float] = {}
                seen = 0
                model.train()
                for idx in self._batches(epoch):
                    parts = model(idx)
                    loss = parts["loss"]
                    values = self._reduce({k: float(v.detach()) for k, v in parts.items()})
                    if not all(math.isfinite(v) for v in values.values()):
                        raise self._diverged(values, epoch, state["step"], ckpt)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.s.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, self.s.grad_clip)
                    opt.step()
                    sched.step()
                    if self.after_step is not None:
                        self.after_step(values)
                    state["step"] += 1
                    seen += 1
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar(loss=values["loss"], epoch=epoch + 1)
                    if self.s.max_steps is not None and state["step"] >= self.s.max_steps:
                        state["stopped"] = f"max_steps={self.s.max_steps} reached"
                        break
                rec = {"epoch": epoch + 1, "step": state["step"], **{k: v / max(seen, 1) for k, v in sums.items()},
                       "lr": float(sched.get_last_lr()[0]), "seconds": round(time.perf_counter() - t0, 3)}
                if self.evaluate is not None:
                    score = self._evaluate()
                    rec["val"] = score
                    if score > state["best"]:
                        state.update(best=score, best_epoch=epoch + 1, bad_epochs=0)
                        best_weights = copy.deepcopy(self.objective.state_dict())
                    else:
                        state["bad_epochs"] += 1
                        if self.s.patience is not None and state["bad_epochs"] >= self.s.patience:
                            state["stopped"] = f"early stop: no val gain for {self.s.patience} epochs"
                bar(val=rec.get("val"))
                self.history.append(rec)
                state["epoch"] = epoch + 1
                if ckpt is not None:
                    self._save(ckpt, opt, sched, state, best_weights)
                if self.on_epoch_end is not None:
                    self.on_epoch_end(rec)
        if best_weights is not None:
            self.objective.load_state_dict(best_weights)
        self.record.update(best_epoch=state["best_epoch"], best_val=None if state["best_epoch"] is None else state["best"],
                           stopped=state["stopped"] or "all epochs done", steps=state["step"],
                           train_seconds=round(time.perf_counter() - t0, 3))
        return self.history

    # ------------------------------------------------------------ helpers
    def _choose_lr(self, total: int, resuming: bool) -> float:
        if self.s.lr != "auto":
            self.record["lr"] = float(self.s.lr)
            return float(self.s.lr)
        if resuming:
            return 1e-3  # a placeholder: the checkpoint's optimizer and scheduler state set the rate
        if self.lr_search is None:
            raise ConfigError(f"{self.s.name}: lr='auto' needs a learning-rate search, and this run has none; "
                              "pass a number, e.g. lr=1e-3")
        # Every rank runs the same seeded search on the whole batch (no gradient sync needed), and
        # rank 0's choice is broadcast so the processes can never disagree.
        lr, found = self.lr_search(self.objective, self.n_rows, self.s, total)
        if self.world_size > 1:
            import torch.distributed as dist

            box = [lr]
            dist.broadcast_object_list(box, src=0)
            lr = float(box[0])
        self.record.update(lr=lr, **found)
        return lr

    def _wrap(self) -> nn.Module:
        if self.world_size == 1:
            return self.objective
        from torch.nn.parallel import DistributedDataParallel

        # Unused parameters (a transformer's pooler, say) must not stall the gradient all-reduce.
        return DistributedDataParallel(self.objective, find_unused_parameters=True)

    def _rows_per_rank(self) -> int:
        return math.ceil(self.n_rows / self.world_size)

    def _batches(self, epoch: int):
        """This rank's batches: the same seeded permutation on every rank, dealt out round-robin.

        Rank r takes positions r, r + W, ... of the permutation (as ``DistributedSampler`` does),
        so step k's global batch is the same set of rows whatever the number of processes.
        """
        order = self._order(epoch)
        per_rank = self._rows_per_rank()
        pad = per_rank * self.world_size - self.n_rows
        if pad:
            order = torch.cat([order, order[:pad]])
        mine = order[self.rank :: self.world_size]
        for start in range(0, len(mine), self.local_batch):
            yield mine[start : start + self.local_batch]

    def _order(self, epoch: int) -> torch.Tensor:
        """Epoch ``epoch``'s permutation of the rows (the same on every rank, and again on resume)."""
        if self.s.order == "reseeded":
            return torch.randperm(self.n_rows, generator=torch.Generator().manual_seed(self.s.seed + epoch))
        if self._stream is None or self._stream[0] > epoch:
            self._stream = (0, torch.Generator().manual_seed(self.s.seed))
        done, g = self._stream
        for _ in range(done, epoch):  # a resumed run replays the epochs it skips
            torch.randperm(self.n_rows, generator=g)
        self._stream = (epoch + 1, g)
        return torch.randperm(self.n_rows, generator=g)

    def _reduce(self, values: dict[str, float]) -> dict[str, float]:
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t)}

    def _evaluate(self) -> float:
        score = float(self.evaluate()) if self.rank == 0 else 0.0
        if self.world_size > 1:
            import torch.distributed as dist

            box = [score]
            dist.broadcast_object_list(box, src=0)
            score = float(box[0])
        return score

    def _diverged(self, values: dict[str, float], epoch: int, step: int, ckpt: Path | None) -> TrainingDivergedError:
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        keep = (f"the last good checkpoint ({self.history[-1]['epoch'] if self.history else 'none yet'}) is kept "
                f"in {ckpt}" if ckpt is not None else "no checkpoint_dir was set, so nothing was saved")
        return TrainingDivergedError(
            f"the loss became non-finite at epoch {epoch + 1}, step {step + 1} ({parts}); training stopped and {keep}. "
            f"Lower lr (now {self.record.get('lr', self.s.lr)}), keep grad_clip set, or check the inputs and teacher outputs for NaN/inf"
        )

    def _save(self, path: Path, opt: Any, sched: Any, state: dict[str, Any], best: dict[str, torch.Tensor] | None) -> None:
        if self.rank == 0:
            blob = {
                "fingerprint": self.s.fingerprint,
                "objective": self.objective.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "state": json.dumps(state),
                "history": json.dumps(self.history),
                "best": best,
                "rng": torch.get_rng_state(),
            }
            with atomic_file(path, "wb") as fh:  # a crash leaves the previous checkpoint intact
                torch.save(blob, fh)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def _load(self, path: Path, opt: Any, sched: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("fingerprint") != self.s.fingerprint:
            raise ConfigError(
                f"the checkpoint in {path.parent} was written by a different run (other config, data or models); "
                "pass another checkpoint_dir, delete it, or set resume=False to start over"
            )
        self.objective.load_state_dict(blob["objective"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        torch.set_rng_state(blob["rng"])
        self.history = json.loads(blob["history"])
        return json.loads(blob["state"]), blob["best"]


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able parts, to tie a checkpoint to the run that wrote it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def make_optimizer(name: str, params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer :data:`OPTIMIZERS` names, over ``params``."""
    if not params:
        raise ConfigError("the model has no trainable parameters (all have requires_grad=False)")
    return OPTIMIZERS[name](params, lr, weight_decay)


def _schedule(kind: str, warmup: float, total: int, steps_per_epoch: int = 1) -> Callable[[int], float]:
    """Step -> share of the peak rate: a linear rise over ``warmup`` of the steps, then schedule ``kind``."""
    warm = int(round(warmup * total))
    shape = SCHEDULES[kind]

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return shape(step - warm, max(1, total - warm), max(1, steps_per_epoch))

    return factor


class _progress:
    """A rich progress bar over optimizer steps (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, done: int, name: str):
        self.enabled, self.total, self.done, self.name = enabled, total, done, name
        self.loss: float | None = None
        self.val: float | None = None
        self.epoch = 0

    def __enter__(self) -> _progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(self.name), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.description}"), transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total, completed=self.done)
        return self

    def __call__(self, loss: float | None = None, val: float | None = None, epoch: int | None = None) -> None:
        if not self.enabled:
            return
        advance = 1 if loss is not None else 0
        self.loss = loss if loss is not None else self.loss
        self.val = val if val is not None else self.val
        self.epoch = epoch or self.epoch
        desc = f"epoch {self.epoch} loss {self.loss:.4f}" if self.loss is not None else ""
        if self.val is not None:
            desc += f" val {self.val:.4f}"
        self.bar.update(self.task, advance=advance, description=desc)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)

