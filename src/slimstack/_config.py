"""Config base class and the registry that maps config types to handlers.

One technique is one frozen config dataclass plus one handler; users call one verb
(``ss.prune``, ``ss.quantize``, ...) and the verb looks the handler up by the config's type.
Configs are data: each serialises to ``{"type", "version", "data"}`` and back, so a YAML recipe is
``yaml.safe_load`` plus a registry lookup, with no import paths, ``exec`` or pickle.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError, unknown_name

__all__ = ["Config", "register_config", "config_from_dict", "registered_configs", "Registry"]

_CONFIGS: dict[str, type[Config]] = {}

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every technique config.

    Subclasses are frozen dataclasses decorated with :func:`register_config`. Field validation goes
    in :meth:`validate`, which runs at construction, so a bad value fails where it is written.
    """

    version: ClassVar[int] = 1
    kind: ClassVar[str] = "config"  # the verb family: "prune", "quantize", "distill", ...

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field, its value, what is allowed and the fix."""

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return {"type": type(self).__name__, "version": self.version, "data": data}

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        return config_from_dict(d, expected=cls)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


def _to_plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def register_config(cls: type[C]) -> type[C]:
    """Class decorator: make a config constructible from its type name."""
    name = cls.__name__
    if name in _CONFIGS and _CONFIGS[name] is not cls:
        raise RuntimeError(f"config type {name!r} registered twice")
    _CONFIGS[name] = cls
    return cls


def registered_configs(kind: str | None = None) -> dict[str, type[Config]]:
    return {n: c for n, c in _CONFIGS.items() if kind is None or c.kind == kind}


def config_from_dict(d: dict[str, Any], expected: type[Config] | None = None) -> Config:
    """Rebuild a config from ``{"type", "version", "data"}`` (or ``{"type", **fields}``)."""
    if not isinstance(d, dict) or "type" not in d:
        raise ConfigError(f"a config must be a mapping with a 'type' key, got {d!r}")
    name = d["type"]
    if name not in _CONFIGS:
        raise unknown_name("config type", name, _CONFIGS)
    cls = _CONFIGS[name]
    if expected is not None and not issubclass(cls, expected):
        raise ConfigError(f"expected a {expected.__name__}, got config type {name!r}")
    data = d.get("data", {k: v for k, v in d.items() if k not in ("type", "version")})
    version = d.get("version", cls.version)
    if version > cls.version:
        raise ConfigError(
            f"{name} version {version} is newer than this slimstack understands ({cls.version}); "
            "upgrade slimstack"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise unknown_name(f"field of {name}", unknown[0], fields)
    hints = typing.get_type_hints(cls)
    kwargs = {k: _from_plain(v, hints.get(k)) for k, v in data.items()}
    return cls(**kwargs)


def _from_plain(value: Any, hint: Any) -> Any:
    if isinstance(value, dict) and "type" in value and value["type"] in _CONFIGS:
        return config_from_dict(value)
    origin = typing.get_origin(hint)
    if isinstance(value, list) and (hint is tuple or origin is tuple or _hint_has_tuple(hint)):
        return tuple(_from_plain(v, None) for v in value)
    return value


def _hint_has_tuple(hint: Any) -> bool:
    return any(a is tuple or typing.get_origin(a) is tuple for a in typing.get_args(hint))


H = TypeVar("H", bound=Callable[..., Any])


class Registry:
    """Maps a config class to the function that applies it (the handler)."""

    def __init__(self, verb: str):
        self.verb = verb
        self._handlers: dict[type[Config], Callable[..., Any]] = {}

    def register(self, config_cls: type[Config]) -> Callable[[H], H]:
        def deco(fn: H) -> H:
            self._handlers[config_cls] = fn
            return fn

        return deco

    def lookup(self, config: Any) -> Callable[..., Any]:
        for cls in type(config).__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        names = sorted(c.__name__ for c in self._handlers)
        raise ConfigError(
            f"ss.{self.verb} does not take {type(config).__name__!r}; pass one of: "
            f"{', '.join(names) or '(none registered)'}"
        )

    def __contains__(self, config_cls: type[Config]) -> bool:
        return config_cls in self._handlers
