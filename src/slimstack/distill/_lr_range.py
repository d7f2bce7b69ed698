"""Choose a learning rate by a short range test on the objective itself (``DistillConfig(lr="auto")``).

Why: one fixed default cannot suit every student. A linear student or a 16-unit MLP that must match
temperature-softened targets needs larger weights than labels alone ask for, and under a fixed
budget a too-small rate leaves it short of its teacher (a 64-24-10 MLP reached 0.84 on digits with
``lr=1e-3`` against 0.92 trained on labels alone at ``3e-3``). So each candidate rate trains a copy
of the objective from the same starting weights for a few steps at a constant rate, the loss on a
fixed set of training rows is compared, and the rate with the lowest loss wins (the smaller rate on
a near tie, as it is the safer one for the full run, which then anneals from it).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

__all__ = ["CANDIDATES", "range_test", "probe_steps"]

CANDIDATES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
_TIE = 0.02  # a candidate must beat a smaller rate's loss by this share to be preferred


def probe_steps(total_steps: int) -> int:
    """Steps per candidate: a twentieth of the run, between 25 and 100."""
    return int(min(100, max(25, total_steps // 20)))


def range_test(objective: nn.Module, n_rows: int, batch_size: int, make_optimizer: Any, *, steps: int,
               seed: int, grad_clip: float | None, candidates: tuple[float, ...] = CANDIDATES,
               probe_rows: int = 1024) -> tuple[float, list[dict[str, float]]]:
    """``(chosen_lr, [{"lr", "loss"}, ...])``; ``objective`` and the RNG state are restored after.

    ``make_optimizer(params, lr)`` builds the run's own optimizer, so the test ranks rates for the
    optimizer that will use them.
    """
    start = copy.deepcopy(objective.state_dict())
    rng = torch.get_rng_state()
    # The objective's own generators (augmentation) must start the real run where they stand now.
    gens = {k: v.get_state() for k, v in vars(objective).items() if isinstance(v, torch.Generator)}
    was = objective.training
    g = torch.Generator().manual_seed(seed + 104729)
    probe = torch.randperm(n_rows, generator=g)[: min(n_rows, probe_rows)]
    table: list[dict[str, float]] = []
    try:
        for lr in candidates:
            objective.load_state_dict(start)
            torch.manual_seed(seed)
            params = [p for p in objective.parameters() if p.requires_grad]
            opt = make_optimizer(params, lr)
            loss = _train_briefly(objective, opt, params, n_rows, batch_size, steps, seed, grad_clip)
            if math.isfinite(loss):
                loss = _probe_loss(objective, probe, batch_size)
            table.append({"lr": lr, "loss": loss})
    finally:
        objective.load_state_dict(start)
        objective.train(was)
        torch.set_rng_state(rng)
        for k, state in gens.items():
            getattr(objective, k).set_state(state)
    return _pick(table), table


def _train_briefly(objective: nn.Module, opt: torch.optim.Optimizer, params: list[nn.Parameter], n_rows: int,
                   batch_size: int, steps: int, seed: int, grad_clip: float | None) -> float:
    objective.train()
    g = torch.Generator().manual_seed(seed)
    done, loss_value = 0, math.nan
    while done < steps:
        order = torch.randperm(n_rows, generator=g)
        for s in range(0, n_rows, batch_size):
            loss = objective(order[s : s + batch_size])["loss"]
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                return math.inf
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            done += 1
            if done >= steps:
                break
    return loss_value


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


def _pick(table: list[dict[str, float]]) -> float:
    best = None
    for row in table:  # ascending rates: a larger one must be clearly better
        if not math.isfinite(row["loss"]):
            continue
        if best is None or row["loss"] < best["loss"] * (1.0 - _TIE):
            best = row
    return float(best["lr"] if best is not None else min(r["lr"] for r in table))
