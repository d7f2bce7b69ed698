"""Validation helpers every config and verb uses, so a bad value reads the same everywhere.

Each raises :class:`~slimstack.errors.ConfigError` naming the field, the value, what is allowed and,
for names, the closest allowed one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError, close_matches, unknown_name

__all__ = ["Choices", "check_choice", "check_range", "check_tolerance", "is_number"]

T = TypeVar("T")


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


def check_tolerance(value: Any, field: str = "tolerance") -> None:
    """A tolerance is a relative quality loss in (0, 1): 0.01 lets the result lose 1 % of the baseline's quality."""
    if value is not None and not (is_number(value) and 0 < value < 1):
        raise ConfigError(f"{field}={value!r} must be a relative quality loss in (0, 1), e.g. 0.01 for 1%")


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


class Choices(Generic[T]):
    """A small registry of named options (a loss, an augmentation, a schedule): name -> implementation.

    A config field that names an option is checked with :meth:`check` where the config is written
    (an unknown name fails with the closest registered one), and the code that runs it looks the name
    up with ``choices[name]`` instead of an if-chain, so adding an option is one :meth:`register` call.

    Examples
    --------
    >>> ACTIVATIONS = Choices("activation")
    >>> ACTIVATIONS.register("relu", max)
    <built-in function max>
    >>> ACTIVATIONS.check("Net.activation", "rleu")
    Traceback (most recent call last):
    ...
    slimstack.errors.ConfigError: Net.activation='rleu' is not one of: relu. Did you mean 'relu'?
    """

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None) -> Any:
        """Add ``item`` under ``name`` (returns it); without ``item``, a decorator that adds what it decorates."""
        if item is None:
            def deco(obj: T) -> T:
                self._items[name] = obj
                return obj

            return deco
        self._items[name] = item
        return item

    def check(self, field: str, value: Any, *, also: Iterable[str] = ()) -> None:
        """``field`` must name a registered option (or one of ``also``, e.g. ``"auto"``)."""
        names = [*also, *self._items]
        if value not in names:
            hint = close_matches(value, names) if isinstance(value, str) else ""
            raise ConfigError(f"{field}={value!r} is not one of: {', '.join(names)}.{hint}")

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            raise unknown_name(self.what, name, self._items)
        return self._items[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"Choices({self.what!r}: {', '.join(self._items)})"

