"""Choose a learning rate by a short range test on the objective itself (``DistillConfig(lr="auto")``).

Why: one fixed default cannot suit every student. A linear student or a 16-unit MLP that must match
temperature-softened targets needs larger weights than labels alone ask for, and under a fixed
budget a too-small rate leaves it short of its teacher (a 64-24-10 MLP reached 0.84 on digits with
``lr=1e-3`` against 0.92 trained on labels alone at ``3e-3``).

How: successive halving over the candidate rates. Every candidate trains a copy of the objective
from the same starting weights at a constant rate for ``steps`` steps (rung 1), and its loss on a
fixed set of training rows is measured. The better half (3 of 5) then continues for another
``steps`` steps (rung 2), and the lowest loss at rung 2 wins; a larger rate must beat a smaller one
by 2 % (the smaller is the safer one for the full run, which anneals from it).

Why two rungs: a probe of ~25 steps ranks rates by how fast they start, which favours large ones.
On digits a 4-8-16 CNN (BatchNorm) leads at 3e-2 after 25 steps at every seed, while 1e-2 often
leads after 50; on one data split 3e-2 cost that student 2.2 points of validation accuracy at 10
epochs and 0.7 at 30 against 1e-2. A rate that keeps its lead when the probe is doubled is
chosen; one that led only by a fast start is not (docs/distill.md has the rules compared).
Rung 2 continues the survivors' runs (weights, optimizer state, data order and random streams
kept), so it costs ``3 * steps`` more steps, not ``3 * 2 * steps``, and its result equals one
uninterrupted run of ``2 * steps``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

__all__ = ["CANDIDATES", "RUNGS", "pick", "probe_steps", "range_test", "survivors"]

CANDIDATES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
RUNGS = 2  # rung r trains the survivors to r * steps; each rung keeps the better half
_TIE = 0.02  # a candidate must beat a smaller rate's loss by this share to be preferred


def probe_steps(total_steps: int) -> int:
    """Steps of the first rung: a twentieth of the run, between 25 and 100."""
    return int(min(100, max(25, total_steps // 20)))


def range_test(objective: nn.Module, n_rows: int, batch_size: int, make_optimizer: Any, *, steps: int,
               seed: int, grad_clip: float | None, candidates: tuple[float, ...] = CANDIDATES,
               probe_rows: int = 1024) -> tuple[float, list[dict[str, Any]]]:
    """``(chosen_lr, [{"lr", "loss", "losses", "steps"}, ...])``; ``objective`` and the RNG state are restored after.

    ``make_optimizer(params, lr)`` builds the run's own optimizer, so the test ranks rates for the
    optimizer that will use them. ``losses`` holds a candidate's probe loss after each rung it ran,
    ``loss`` the last of them and ``steps`` how many steps it trained.
    """
    start = copy.deepcopy(objective.state_dict())
    rng = torch.get_rng_state()
    # The objective's own generators (augmentation) must start the real run where they stand now.
    gens = {k: v.get_state() for k, v in vars(objective).items() if isinstance(v, torch.Generator)}
    was = objective.training
    g = torch.Generator().manual_seed(seed + 104729)
    probe = torch.randperm(n_rows, generator=g)[: min(n_rows, probe_rows)]
    runs: dict[float, _Run] = {}
    table = {lr: {"lr": lr, "losses": []} for lr in candidates}
    try:
        alive = list(candidates)
        for rung in range(RUNGS):
            for lr in alive:
                if lr not in runs:
                    runs[lr] = _Run(objective, lr, make_optimizer, start, gens, n_rows, batch_size, seed, grad_clip)
                loss = runs[lr].advance(steps)
                table[lr]["losses"].append(_probe_loss(objective, probe, batch_size) if math.isfinite(loss) else loss)
                runs[lr].pause()
            alive = survivors({lr: table[lr]["losses"][-1] for lr in alive}) if rung < RUNGS - 1 else alive
            for lr in list(runs):  # only the survivors' paused states are kept
                if lr not in alive:
                    del runs[lr]
    finally:
        objective.load_state_dict(start)
        objective.train(was)
        torch.set_rng_state(rng)
        for k, state in gens.items():
            getattr(objective, k).set_state(state)
    rows = [{**r, "loss": r["losses"][-1], "steps": steps * len(r["losses"])} for r in table.values()]
    return pick(rows), rows


def survivors(losses: dict[float, float]) -> list[float]:
    """The better half (rounded up) of the rates by loss, in ascending rate order; diverged ones never survive."""
    finite = sorted((loss, lr) for lr, loss in losses.items() if math.isfinite(loss))
    return sorted(lr for _, lr in finite[: math.ceil(len(losses) / 2)])


def pick(table: list[dict[str, Any]]) -> float:
    """The chosen rate: among those that ran every rung, the lowest last loss; a larger rate must be clearly better.

    Rows hold ``lr``, ``loss`` and ``losses`` (one per rung run). A rate dropped at rung 1 cannot
    win, however low its rung-1 loss: its lead did not survive a longer probe. When every candidate
    diverged, the smallest rate is returned.
    """
    longest = max(len(r["losses"]) for r in table)
    best = None
    for row in sorted(table, key=lambda r: r["lr"]):  # ascending rates: a larger one must be clearly better
        if len(row["losses"]) < longest or not math.isfinite(row["loss"]):
            continue
        if best is None or row["loss"] < best["loss"] * (1.0 - _TIE):
            best = row
    return float(best["lr"] if best is not None else min(r["lr"] for r in table))


class _Run:
    """One candidate's probe run, which can pause (between rungs) and resume exactly where it stopped.

    The objective is shared by every candidate, so a paused run keeps its own weights, optimizer,
    data order and random-number states, and puts them back before it trains on.
    """

    def __init__(self, objective: nn.Module, lr: float, make_optimizer: Any, start: dict[str, torch.Tensor],
                 gens: dict[str, Any], n_rows: int, batch_size: int, seed: int, grad_clip: float | None):
        self.objective, self.n_rows, self.batch_size, self.grad_clip = objective, n_rows, batch_size, grad_clip
        objective.load_state_dict(start)
        torch.manual_seed(seed)
        for k, state in gens.items():  # every candidate sees the same augmentation stream
            getattr(objective, k).set_state(state)
        self.params = [p for p in objective.parameters() if p.requires_grad]
        self.opt = make_optimizer(self.params, lr)
        self.order_gen = torch.Generator().manual_seed(seed)
        self.order: torch.Tensor | None = None
        self.pos = 0
        self.saved: dict[str, Any] | None = None

    def advance(self, steps: int) -> float:
        """Train ``steps`` more steps; the last batch's loss (``inf`` once the loss is not finite)."""
        if self.saved is not None:
            self.objective.load_state_dict(self.saved["weights"])
            torch.set_rng_state(self.saved["rng"])
            for k, state in self.saved["gens"].items():
                getattr(self.objective, k).set_state(state)
            self.saved = None
        self.objective.train()
        loss_value = math.nan
        for _ in range(steps):
            if self.order is None or self.pos >= self.n_rows:
                self.order, self.pos = torch.randperm(self.n_rows, generator=self.order_gen), 0
            idx = self.order[self.pos : self.pos + self.batch_size]
            self.pos += self.batch_size
            loss = self.objective(idx)["loss"]
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                return math.inf
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            self.opt.step()
        return loss_value

    def pause(self) -> None:
        """Keep this run's weights and random states (its optimizer keeps its own state)."""
        self.saved = {"weights": copy.deepcopy(self.objective.state_dict()), "rng": torch.get_rng_state(),
                      "gens": {k: v.get_state() for k, v in vars(self.objective).items()
                               if isinstance(v, torch.Generator)}}


@torch.no_grad()
def _probe_loss(objective: nn.Module, probe: torch.Tensor, batch_size: int) -> float:
    objective.eval()  # no augmentation, no dropout: every candidate is scored on the same inputs
    total, n = 0.0, 0
    for s in range(0, len(probe), max(batch_size, 256)):
        idx = probe[s : s + max(batch_size, 256)]
        total += float(objective(idx)["loss"]) * len(idx)
        n += len(idx)
    loss = total / max(n, 1)
    return loss if math.isfinite(loss) else math.inf
