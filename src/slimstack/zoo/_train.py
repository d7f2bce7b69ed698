"""``ss.zoo.train``: train a reference model on labelled arrays with the shared training loop."""

from __future__ import annotations

from torch import nn

from .._supervised import SupervisedObjective
from .._training import Trainer, TrainSettings
from .._utils import any_grad_mode, keeps_global_rng, seed_everything
from ..datasets import Dataset

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

    Trains ``model`` in place and returns it. The rate follows a cosine over the epochs. With
    ``val``, the weights of the epoch with the best validation quality (accuracy, or R^2 for
    regression; ``ss.measure.score``) are kept. Deterministic for a given ``seed``. The loop is
    the one every slimstack technique trains with (``slimstack._training.Trainer``).

    Examples
    --------
    >>> model = ss.zoo.train(ss.zoo.digits_mlp(), ss.datasets.load("digits", split="train"), epochs=5)  # doctest: +SKIP
    """
    objective = SupervisedObjective(model, data, what="ss.zoo.train")
    evaluate = None
    if val is not None:
        from ..measure import score

        evaluate = lambda: score(model, val)  # noqa: E731
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                             schedule="epoch_cosine", order="stream", seed=seed, distributed=False,
                             name="ss.zoo.train")
    on_epoch_end = None
    if verbose:
        on_epoch_end = lambda rec: print(f"epoch {rec['epoch']}/{epochs} val={rec.get('val', float('nan')):.4f}")  # noqa: E731
    seed_everything(seed)
    Trainer(objective, len(objective), settings, evaluate=evaluate, on_epoch_end=on_epoch_end).fit()
    model.eval()
    return model
