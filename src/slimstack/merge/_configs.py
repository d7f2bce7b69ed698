"""Merge configs: one frozen dataclass per merging rule (``kind = "merge"``)."""

from __future__ import annotations

import dataclasses

from .._config import Config, register_config
from .._validate import check_choice, is_number
from ..errors import ConfigError

__all__ = ["MergeConfig", "UniformSoup", "GreedySoup", "TaskArithmetic", "TiesMerging", "BN_POLICIES"]

BN_POLICIES = ("average", "recalibrate")


@dataclasses.dataclass(frozen=True)
class MergeConfig(Config):
    """Fields every merge rule shares.

    batchnorm : {"average", "recalibrate"}
        Float buffers (BatchNorm running statistics) are averaged over the merged models;
        ``"recalibrate"`` then recomputes them with a forward pass over ``data`` (needs ``data=``).
    """

    kind = "merge"
    batchnorm: str = "average"

    def validate(self) -> None:
        check_choice(f"{type(self).__name__}.batchnorm", self.batchnorm, BN_POLICIES)


@register_config
@dataclasses.dataclass(frozen=True)
class UniformSoup(MergeConfig):
    """Average every weight over all models (Wortsman et al. 2022).

    >>> UniformSoup().to_dict()["type"]
    'UniformSoup'
    """


@register_config
@dataclasses.dataclass(frozen=True)
class GreedySoup(MergeConfig):
    """Add models in order of their own validation score while the soup's score improves (needs ``data=``)."""


@register_config
@dataclasses.dataclass(frozen=True)
class TaskArithmetic(MergeConfig):
    """``base + scaling * sum(model - base)`` (Ilharco et al. 2023; needs ``base=``).

    scaling : float or None
        ``None`` picks the best of ``scaling_grid`` on ``data=``; without data it is
        ``1 / n_models``, which averages the task vectors (equal to the uniform soup of the models).
    """

    scaling: float | None = None
    scaling_grid: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

    def validate(self) -> None:
        super().validate()
        if self.scaling is not None and not is_number(self.scaling):
            raise ConfigError(f"TaskArithmetic.scaling={self.scaling!r} must be a finite number (e.g. 0.3) or None")
        if not self.scaling_grid or not all(is_number(s) for s in self.scaling_grid):
            raise ConfigError(f"TaskArithmetic.scaling_grid={self.scaling_grid!r} must be a non-empty tuple of numbers")


@register_config
@dataclasses.dataclass(frozen=True)
class TiesMerging(MergeConfig):
    """Trim each task vector to its top ``density`` share, elect signs, average agreeing entries
    (Yadav et al. 2023; needs ``base=``), then add ``scaling`` times the result to the base."""

    density: float = 0.2
    scaling: float = 1.0

    def validate(self) -> None:
        super().validate()
        if not (is_number(self.density) and 0.0 < self.density <= 1.0):  # check_range words it differently
            raise ConfigError(f"TiesMerging.density={self.density!r} must be in (0, 1]: the share of each task "
                              "vector's entries kept (0.2 keeps the largest 20%)")
        if not is_number(self.scaling):
            raise ConfigError(f"TiesMerging.scaling={self.scaling!r} must be a finite number (e.g. 1.0)")
