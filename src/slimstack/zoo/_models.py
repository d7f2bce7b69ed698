"""Small reference models that train in seconds on 2 cores.

Each model records the keyword arguments that built it (:meth:`get_config`), and is registered
by name in the io architecture registry (:func:`slimstack.io.register_architecture`, re-exported
here), so ``ss.save``/``ss.load`` rebuild it from JSON with no pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..io import architectures, build_architecture, register_architecture

__all__ = ["DigitsMLP", "DigitsCNN", "DigitsResNet", "register_architecture", "build_architecture",
           "architectures", "digits_mlp", "digits_cnn", "digits_resnet"]


class _Configurable(nn.Module):
    def get_config(self) -> dict[str, Any]:
        return dict(self._config)


@register_architecture
class DigitsMLP(_Configurable):
    """A multilayer perceptron for 8x8 digits (takes (n, 1, 8, 8) or (n, 64))."""

    def __init__(self, in_features: int = 64, hidden: Sequence[int] = (128, 64), num_classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        self._config = {"in_features": in_features, "hidden": list(hidden), "num_classes": num_classes,
                        "dropout": dropout}
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_architecture
class DigitsCNN(_Configurable):
    """A small CNN for (n, 1, 8, 8) digits: two conv blocks, then a linear classifier."""

    def __init__(self, channels: Sequence[int] = (32, 64), hidden: int = 128, num_classes: int = 10):
        super().__init__()
        c1, c2 = channels
        self._config = {"channels": [c1, c2], "hidden": hidden, "num_classes": num_classes}
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 16, hidden), nn.ReLU(),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _Block(nn.Module):
    def __init__(self, c: int, mid: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, mid, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


@register_architecture
class DigitsResNet(_Configurable):
    """A residual CNN for digits: a stem, ``blocks`` residual blocks, global pooling, a classifier."""

    def __init__(self, width: int = 64, blocks: int = 2, num_classes: int = 10):
        super().__init__()
        self._config = {"width": width, "blocks": blocks, "num_classes": num_classes}
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*[_Block(width, width) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def _seeded(cls, seed: int | None, kw: dict[str, Any]) -> nn.Module:
    if seed is None:
        return cls(**kw)
    with torch.random.fork_rng():  # seeded initial weights without touching the caller's RNG state
        torch.manual_seed(seed)
        return cls(**kw)


def digits_mlp(seed: int | None = 0, **kw: Any) -> DigitsMLP:
    """An untrained :class:`DigitsMLP` with weights initialised from ``seed``; train it with ``ss.zoo.train``."""
    return _seeded(DigitsMLP, seed, kw)


def digits_cnn(seed: int | None = 0, **kw: Any) -> DigitsCNN:
    """An untrained :class:`DigitsCNN` with weights initialised from ``seed``; train it with ``ss.zoo.train``."""
    return _seeded(DigitsCNN, seed, kw)


def digits_resnet(seed: int | None = 0, **kw: Any) -> DigitsResNet:
    """An untrained :class:`DigitsResNet` (residual connections, for structured-pruning tests)."""
    return _seeded(DigitsResNet, seed, kw)
