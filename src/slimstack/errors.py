"""The slimstack error hierarchy.

Every error a user can cause derives from :class:`SlimstackError`, and its message names the bad
value, what is allowed and how to fix it. The CLI prints these in one or two lines and exits 2.
Subclasses also derive from the built-in exception a Python user would expect
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "SlimstackError",
    "ConfigError",
    "DataError",
    "ModelError",
    "ShapeError",
    "ModelFileError",
    "UnsafeFileError",
    "UnknownNameError",
    "NotFittedError",
    "close_matches",
]


class SlimstackError(Exception):
    """Base class of every error slimstack raises on bad input."""


class ConfigError(SlimstackError, ValueError):
    """A config or recipe field has a value outside what is allowed."""


class DataError(SlimstackError, ValueError):
    """Data cannot be used as given (missing column, NaN, empty, wrong shape)."""


class ModelError(SlimstackError, ValueError):
    """A model cannot be used as given (unsupported type, cannot be traced, ...)."""


class ShapeError(ModelError):
    """Inputs or outputs whose shape does not fit the model."""


class ModelFileError(SlimstackError, OSError):
    """A model file or directory is missing, corrupt or of an unknown format."""


class UnsafeFileError(SlimstackError, PermissionError):
    """Loading the file would execute code (pickle) and the caller did not pass ``trusted=True``."""


class UnknownNameError(SlimstackError, KeyError):
    """A name (dataset, config type, method, layer) that does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class NotFittedError(SlimstackError, AttributeError):
    """An estimator used before ``fit``."""


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choices, or an empty string."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.5)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


def unknown_name(kind: str, name: str, choices: Iterable[str], fix: str = "") -> UnknownNameError:
    """Build the standard error for an unknown name: the name, the allowed ones, the nearest."""
    choices = sorted(str(c) for c in choices)
    msg = f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}.{close_matches(name, choices)}"
    if fix:
        msg += f" {fix}"
    return UnknownNameError(msg)
