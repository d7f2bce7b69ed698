"""The handler registry behind ``ss.prune`` and the base of its torch handlers.

Every pruning config maps to handler objects here (``HANDLERS.dispatch(config, model)`` picks the
first whose :meth:`~slimstack._config.Handler.applies_to` accepts the model). The torch handlers
refuse causal LMs with a reason, so an LM handler registered for the same config (``prune/_lm*.py``)
is chosen for those.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._arch import is_causal_lm
from .._config import Handler, Registry

__all__ = ["HANDLERS", "TorchHandler"]

HANDLERS = Registry("prune")


class TorchHandler(Handler):
    """Base of the handlers that prune torch ``nn.Module`` networks and sentence encoders."""

    backends: ClassVar[tuple[str, ...]] = ("torch",)

    def applies_to(self, model: Any) -> str | None:
        name = self.config.__name__
        if is_causal_lm(model):
            return (f"the {name} handler for networks and sentence encoders does not prune causal LMs "
                    f"({type(model).__name__}); an LM pruning handler must be registered for them")
        try:
            from torch import nn
        except ImportError:  # pragma: no cover - torch is a dependency
            return "torch is not installed"
        if not isinstance(model, nn.Module):
            return (f"{name} takes a torch nn.Module, got {type(model).__module__}.{type(model).__name__}; "
                    "use ss.TreePruning for scikit-learn trees")
        return None
