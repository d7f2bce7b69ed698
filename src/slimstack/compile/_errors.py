"""The signal a converter raises for a model part it cannot express, and the warning a fallback gives."""

from __future__ import annotations

__all__ = ["NotCompilable", "CompileWarning"]


class NotCompilable(Exception):
    """Raised inside the compiler: this part cannot go into the graph; the message is the reason."""


class CompileWarning(UserWarning):
    """A member stays in Python (named, with the reason); the rest of the model is compiled."""
