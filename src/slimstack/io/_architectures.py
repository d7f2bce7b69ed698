"""The architecture registry: module classes ``ss.load`` may rebuild from JSON, by class name.

A registered class is rebuilt as ``cls(**module.get_config())``, so a saved model names its class
and constructor arguments, never an import path. The base holds only the registry; the model zoo
(and any user) registers classes with :func:`register_architecture` (also ``ss.zoo.register_architecture``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import unknown_name

__all__ = ["architecture_of", "architectures", "build_architecture", "register_architecture"]

_ARCHITECTURES: dict[str, Callable[..., Any]] = {}


def register_architecture(cls):
    """Class decorator: let ``ss.load`` rebuild ``cls`` from ``cls(**module.get_config())``.

    Register your own ``nn.Module`` subclasses the same way to save and load them without pickle.
    """
    _ARCHITECTURES[cls.__name__] = cls
    return cls


def architectures() -> list[str]:
    """Names of every registered architecture."""
    return sorted(_ARCHITECTURES)


def architecture_of(module: Any) -> str | None:
    """The registered name of ``module``'s class, or None (unregistered, or no ``get_config``)."""
    name = type(module).__name__
    if _ARCHITECTURES.get(name) is type(module) and hasattr(module, "get_config"):
        return name
    return None


def build_architecture(name: str, kwargs: dict[str, Any]) -> Any:
    """A new ``name`` module built from its saved constructor arguments."""
    if name not in _ARCHITECTURES:
        raise unknown_name("architecture", name, _ARCHITECTURES,
                           fix="Register your module class with ss.zoo.register_architecture before ss.load.")
    return _ARCHITECTURES[name](**kwargs)
