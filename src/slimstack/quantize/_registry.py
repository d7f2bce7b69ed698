"""The quantize registry: config type -> handlers, and backend name -> backend.

``ss.quantize`` dispatches only here: :data:`REGISTRY` maps each quantization config to the
handler(s) that apply it (the first whose ``applies_to`` accepts the model runs), and
:func:`register_backend` adds a runtime the module pipeline can build for (torch, onnxruntime).
"""

from __future__ import annotations

from typing import Any

from .._config import Config, Registry
from ..errors import ConfigError, ModelError

__all__ = ["REGISTRY", "BACKENDS", "register_backend", "offered_backends"]

BACKENDS: dict[str, type] = {}  # name -> backend class (see _backends.py), in registration order


def register_backend(cls: type) -> type:
    """Class decorator: make a backend (with a ``name``) available to handlers that list it."""
    BACKENDS[cls.name] = cls
    return cls


class QuantRegistry(Registry):
    """A :class:`Registry` whose refusal says which configs *can* take the model.

    A causal LM given ``DynamicInt8`` is a wrong config, not a wrong model: when another registered
    config has a handler for the model, the error is a ConfigError naming those configs.
    """

    def dispatch(self, config: Any, model: Any):
        try:
            return super().dispatch(config, model)
        except ModelError as exc:
            fits = [c.__name__ for c in self.configs()
                    if any(h.applies_to(model) is None for h in self.handlers_of(c))]
            if fits:
                raise ConfigError(f"{exc}. Configs that take a {type(model).__name__}: {', '.join(fits)}") from exc
            raise


REGISTRY = QuantRegistry("quantize")


def offered_backends(config_cls: type[Config]) -> tuple[str, ...]:
    """Every backend a handler of ``config_cls`` declares, in order (empty before a handler registers)."""
    out: list[str] = []
    for h in REGISTRY.handlers_of(config_cls):
        out += [b for b in h.backends if b not in out]
    return tuple(out)
