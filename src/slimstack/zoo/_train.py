"""A plain supervised training loop for the reference models."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .._utils import any_grad_mode, keeps_global_rng, seed_everything
from ..datasets import Dataset
from ..errors import DataError

__all__ = ["train"]


@keeps_global_rng
@any_grad_mode
def train(
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int = 20,
    lr: float = 3e-3,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
    val: Dataset | None = None,
    seed: int = 0,
    verbose: bool = False,
) -> nn.Module:
    """Train a classifier (cross-entropy) or regressor (MSE) on ``data`` with AdamW.

    Trains ``model`` in place and returns it. With ``val``, the weights of the epoch with the best
    validation accuracy (or lowest MSE) are kept. Deterministic for a given ``seed``.
    """
    if data.X is None or len(data) == 0:
        raise DataError(f"ss.zoo.train needs a non-empty array dataset, got {data!r}")
    seed_everything(seed)
    X = torch.as_tensor(data.X)
    classify = data.task == "classification"
    y = torch.as_tensor(data.y, dtype=torch.long if classify else torch.float32)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if classify else nn.MSELoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    gen = torch.Generator().manual_seed(seed)
    best, best_state = -np.inf, None
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(X), generator=gen)
        for start in range(0, len(X), batch_size):
            idx = order[start : start + batch_size]
            out = model(X[idx])
            if classify and out.ndim == 2 and int(y.max()) >= out.shape[1]:
                raise DataError(f"{data.name!r} has class id {int(y.max())}, but the model has {out.shape[1]} "
                                f"outputs (ids 0..{out.shape[1] - 1}); class ids are the data's own integer labels, "
                                f"so give the model {int(y.max()) + 1} outputs or relabel the data from 0")
            loss = loss_fn(out.squeeze(-1) if not classify else out, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if val is not None:
            score = _score(model, val, classify)
            if verbose:
                print(f"epoch {epoch + 1}/{epochs} val={score:.4f}")
            if score > best:
                best, best_state = score, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model


@torch.no_grad()
def _score(model: nn.Module, val: Dataset, classify: bool) -> float:
    model.eval()
    out = model(torch.as_tensor(val.X))
    if classify:
        return float((out.argmax(-1).numpy() == val.y).mean())
    return -float(((out.squeeze(-1).numpy() - val.y) ** 2).mean())
