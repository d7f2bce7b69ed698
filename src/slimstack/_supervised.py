"""The supervised objective: cross-entropy or squared error of a model on labelled array rows.

``ss.zoo.train``, QAT and pruning recovery all train this one objective with the shared
:class:`~slimstack._training.Trainer`; pruning recovery adds a distillation term from the unpruned
model through ``soft`` targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import DataError

__all__ = ["SupervisedObjective"]


class SupervisedObjective(nn.Module):
    """``forward(idx) -> {"loss"}``: the task loss of ``model`` on rows ``idx`` of ``data``.

    Classification uses cross-entropy on the data's integer class ids, regression the mean squared
    error of the (single) output. With ``soft`` (the teacher's outputs, one row per training row)
    the loss is ``alpha * distillation + (1 - alpha) * task loss``: Hinton's KL at ``temperature``
    for classifiers, squared error to the teacher's values for regressors.

    Parameters
    ----------
    model : nn.Module
        Trained in place (the trainer optimises this module's parameters).
    data : Dataset
        Labelled array rows (``X``, ``y``, task ``"classification"`` or ``"regression"``).
    what : str
        Names the caller in error messages, e.g. ``"ss.zoo.train"``.
    """

    def __init__(self, model: nn.Module, data: Any, *, what: str = "training", soft: torch.Tensor | None = None,
                 temperature: float = 4.0, alpha: float = 0.5):
        super().__init__()
        if getattr(data, "X", None) is None or getattr(data, "y", None) is None or len(data) == 0 \
                or data.task not in ("classification", "regression"):
            raise DataError(f"{what} needs a non-empty labelled array dataset (classification or regression), "
                            f"got {data!r}")
        self.model = model
        self.name = getattr(data, "name", "data")
        self.classify = data.task == "classification"
        self.X = torch.as_tensor(np.ascontiguousarray(data.X, dtype=np.float32))
        self.y = torch.as_tensor(data.y, dtype=torch.long if self.classify else torch.float32)
        self.top_class = int(self.y.max()) if self.classify else -1
        self.soft, self.temperature, self.alpha = soft, float(temperature), float(alpha)

    def __len__(self) -> int:
        return len(self.X)

    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(self.X[idx])
        if self.classify and out.ndim == 2 and self.top_class >= out.shape[1]:
            raise DataError(f"{self.name!r} has class id {self.top_class}, but the model has {out.shape[1]} "
                            f"outputs (ids 0..{out.shape[1] - 1}); class ids are the data's own integer labels, "
                            f"so give the model {self.top_class + 1} outputs or relabel the data from 0")
        y = self.y[idx]
        task = F.cross_entropy(out, y) if self.classify else F.mse_loss(out.squeeze(-1), y)
        if self.soft is None:
            return {"loss": task}
        t = self.temperature
        if self.classify:
            kd = F.kl_div(F.log_softmax(out / t, -1), F.softmax(self.soft[idx] / t, -1), reduction="batchmean") * t**2
        else:
            kd = F.mse_loss(out, self.soft[idx])
        return {"loss": self.alpha * kd + (1 - self.alpha) * task, "kd": kd, "task": task}
