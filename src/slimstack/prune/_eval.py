"""Quality of a model on a dataset, quickly and untimed (for sensitivity analysis and tree pruning)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._common import is_encoder

__all__ = ["quality"]


@torch.no_grad()
def quality(model: Any, data: Any) -> float:
    """Accuracy (classification), negative MSE (regression) or Spearman (sentence pairs); higher is better."""
    from ..measure import sts_metrics

    if is_encoder(model):
        if getattr(data, "pairs", None) is None:
            raise DataError(f"scoring a sentence encoder needs scored pairs (task 'sts'), got {data!r}")
        sents = data.sentences()
        emb = model.encode(sents, batch_size=128)
        return float(sts_metrics(emb, data.scores)["spearman"])
    if getattr(data, "X", None) is None or data.task not in ("classification", "regression"):
        raise DataError(f"scoring needs labelled array data (classification or regression), got {data!r}")
    was = model.training
    model.eval()
    from ._importance import logits

    out = torch.cat([logits(model(torch.as_tensor(np.ascontiguousarray(data.X[i : i + 512]))))
                     for i in range(0, len(data.X), 512)]).numpy()
    model.train(was)
    if data.task == "classification":
        return float((out.argmax(-1) == data.y).mean())
    return -float(((out.reshape(len(out), -1)[:, 0] - data.y) ** 2).mean())
