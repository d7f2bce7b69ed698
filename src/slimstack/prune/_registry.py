"""The handler registry behind ``ss.prune``: config type -> function that applies it."""

from .._config import Registry

HANDLERS = Registry("prune")
