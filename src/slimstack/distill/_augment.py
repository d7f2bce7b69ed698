"""Input augmentation for distillation: let the teacher label more inputs than the training set.

A teacher's soft targets carry extra information only where the student does not already fit the
labels. On a small training set every model fits every row, so the ensemble's "dark knowledge" is
nearly the one-hot label. Querying the teacher on perturbed inputs (shifted images, noisy
features, mixed pairs) shows the student how the teacher behaves *between* the training rows,
which is where an ensemble and its members differ. The functions here are pure: a batch and a
seeded generator in, a new batch out; the objective calls them and runs the teacher on the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from .._validate import Choices
from ..errors import DataError

__all__ = ["AUGMENTS", "Augment", "augment_batch"]


@dataclasses.dataclass(frozen=True)
class Augment:
    """One ``DistillConfig.augment`` option: ``apply(x, generator, scale, feature_std) -> new batch``.

    ``keeps_labels`` says whether a row's hard label still holds after it (mixup blends two classes,
    so its batches use the distillation loss alone).
    """

    apply: Callable[..., torch.Tensor]
    keeps_labels: bool = True


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator, *, scale: float = 0.1,
                  feature_std: torch.Tensor | None = None) -> torch.Tensor:
    """Return an augmented copy of the float batch ``x`` (rows first); ``x`` is left unchanged.

    Parameters
    ----------
    kind : {"none", "shift", "noise", "mixup"} or another name registered in :data:`AUGMENTS`
        ``"shift"``: each image (``(n, c, h, w)`` or ``(n, h, w)``) moves by a random -1, 0 or +1
        pixel along each axis, padded with zeros. ``"noise"``: Gaussian noise with standard
        deviation ``scale * feature_std`` (per feature; ``scale`` alone without it). ``"mixup"``:
        each row becomes ``lam * x_i + (1 - lam) * x_j`` with ``lam ~ U(0, 1)`` and ``j`` a random
        other row of the batch.
    generator : torch.Generator
        The only source of randomness, so a seed fixes the result.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> augment_batch(torch.zeros(4, 1, 8, 8), "shift", g).shape
    torch.Size([4, 1, 8, 8])
    """
    return AUGMENTS[kind].apply(x, generator, scale, feature_std)


def _shift(x: torch.Tensor, generator: torch.Generator, scale: float, feature_std: torch.Tensor | None) -> torch.Tensor:
    if x.dim() < 3:
        raise DataError(
            f"augment='shift' moves images by a pixel, but the inputs have shape {tuple(x.shape)} "
            "(no height and width axes); use augment='noise' for tabular features"
        )
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    d = torch.randint(0, 3, (n, 2), generator=generator)  # offset into the padded image: 0, 1, 2
    rows = torch.arange(h).view(1, h, 1) + d[:, 0].view(n, 1, 1)
    cols = torch.arange(w).view(1, 1, w) + d[:, 1].view(n, 1, 1)
    b = torch.arange(n).view(n, 1, 1)
    moved = padded.movedim((-2, -1), (1, 2))[b, rows, cols]  # (n, h, w, *channels)
    return moved.movedim((1, 2), (-2, -1)).contiguous()


def _noise(x: torch.Tensor, generator: torch.Generator, scale: float, feature_std: torch.Tensor | None) -> torch.Tensor:
    std = scale if feature_std is None else scale * feature_std
    return x + torch.randn(x.shape, generator=generator, dtype=x.dtype) * std


def _mixup(x: torch.Tensor, generator: torch.Generator, scale: float, feature_std: torch.Tensor | None) -> torch.Tensor:
    n = x.shape[0]
    lam = torch.rand(n, generator=generator, dtype=x.dtype).view(n, *([1] * (x.dim() - 1)))
    partner = torch.randperm(n, generator=generator)
    return lam * x + (1.0 - lam) * x[partner]


AUGMENTS: Choices[Augment] = Choices("augmentation")
AUGMENTS.register("none", Augment(lambda x, generator, scale, feature_std: x))
AUGMENTS.register("shift", Augment(_shift))
AUGMENTS.register("noise", Augment(_noise))
AUGMENTS.register("mixup", Augment(_mixup, keeps_labels=False))
