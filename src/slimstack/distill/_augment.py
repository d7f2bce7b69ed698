"""Input augmentation for distillation: let the teacher label more inputs than the training set.

A teacher's soft targets carry extra information only where the student does not already fit the
labels. On a small training set every model fits every row, so the ensemble's "dark knowledge" is
nearly the one-hot label. Querying the teacher on perturbed inputs (shifted images, noisy
features, mixed pairs) shows the student how the teacher behaves *between* the training rows,
which is where an ensemble and its members differ. The functions here are pure: a batch and a
seeded generator in, a new batch out; the objective calls them and runs the teacher on the result.
"""

from __future__ import annotations

import torch

from ..errors import DataError

__all__ = ["AUGMENTS", "augment_batch", "LABEL_PRESERVING"]

AUGMENTS = ("none", "shift", "noise", "mixup")
# Augmentations after which the row's hard label still holds (mixup blends two classes).
LABEL_PRESERVING = ("none", "shift", "noise")


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator, *, scale: float = 0.1,
                  feature_std: torch.Tensor | None = None) -> torch.Tensor:
    """Return an augmented copy of the float batch ``x`` (rows first); ``x`` is left unchanged.

    Parameters
    ----------
    kind : {"none", "shift", "noise", "mixup"}
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
    if kind == "none":
        return x
    n = x.shape[0]
    if kind == "shift":
        if x.dim() < 3:
            raise DataError(
                f"augment='shift' moves images by a pixel, but the inputs have shape {tuple(x.shape)} "
                "(no height and width axes); use augment='noise' for tabular features"
            )
        h, w = x.shape[-2], x.shape[-1]
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        d = torch.randint(0, 3, (n, 2), generator=generator)  # offset into the padded image: 0, 1, 2
        rows = torch.arange(h).view(1, h, 1) + d[:, 0].view(n, 1, 1)
        cols = torch.arange(w).view(1, 1, w) + d[:, 1].view(n, 1, 1)
        b = torch.arange(n).view(n, 1, 1)
        moved = padded.movedim((-2, -1), (1, 2))[b, rows, cols]  # (n, h, w, *channels)
        return moved.movedim((1, 2), (-2, -1)).contiguous()
    if kind == "noise":
        std = scale if feature_std is None else scale * feature_std
        return x + torch.randn(x.shape, generator=generator, dtype=x.dtype) * std
    if kind == "mixup":
        lam = torch.rand(n, generator=generator, dtype=x.dtype).view(n, *([1] * (x.dim() - 1)))
        partner = torch.randperm(n, generator=generator)
        return lam * x + (1.0 - lam) * x[partner]
    raise DataError(f"unknown augmentation {kind!r}; use one of: {', '.join(AUGMENTS)}")
