"""Validation helpers every config and verb uses, so a bad value reads the same everywhere.

Each raises :class:`~slimstack.errors.ConfigError` naming the field, the value, what is allowed and,
for names, the closest allowed one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError, close_matches

__all__ = ["check_choice", "check_range", "is_number"]


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
    """``field`` (e.g. ``"StaticInt8.observer"``) must be one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        hint = close_matches(value, [str(a) for a in allowed]) if isinstance(value, str) else ""
        raise ConfigError(f"{field}={value!r} is not allowed; choose one of: "
                          f"{', '.join(map(repr, allowed))}.{hint}")


def check_range(field: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, integer: bool = False, example: str = "") -> None:
    """``field`` must be a finite number (an int with ``integer``) within ``[low, high]`` (open ends as asked)."""
    ok = is_number(value) and (not integer or isinstance(value, int))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        span = f" in {lo or '(-inf'}, {hi or 'inf)'}" if (low is not None or high is not None) else ""
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{field}={value!r} must be {kind}{span}{'; e.g. ' + example if example else ''}")
