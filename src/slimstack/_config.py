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

from .errors import ConfigError, close_matches, unknown_name

__all__ = ["Config", "Handler", "Registry", "Request", "config_from_dict", "register_config", "registered_configs", "registries"]

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


H = TypeVar("H")


@dataclasses.dataclass(frozen=True)
class Request:
    """What a verb hands its handler besides the model and the config.

    One vocabulary across verbs: ``train`` is data a technique may learn from (distillation, QAT,
    pruning recovery), ``val`` is labelled data it may only score on (fallback, selection, early
    stopping), ``calibration`` is unlabelled inputs for ranges and importance. ``tolerance`` is always
    relative to the baseline's quality (0.01 = lose at most 1 %; ``ss.quantize`` and ``ss.prune`` take
    it). ``options`` carries what only one verb takes (distill's ``teacher`` and ``on_epoch_end``,
    merge's ``base`` and ``scoring``).
    """

    train: Any = None
    val: Any = None
    calibration: Any = None
    tolerance: float | None = None
    example_inputs: Any = None
    threads: int = 2
    seed: int = 0
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


class Handler:
    """Applies one config type: the one small protocol every technique implements.

    Subclass, set ``config`` (the config class handled) and ``backends`` (the runtimes it can
    produce), implement :meth:`run`, and register an instance with ``REGISTRY.add(MyHandler())`` or
    decorate the class with ``@REGISTRY.register(MyConfig)``. :meth:`applies_to` returns ``None`` when
    the handler can take ``model`` and otherwise the reason it cannot; the registry tries handlers
    for a config in registration order and uses the first that applies.
    """

    config: ClassVar[type[Config]]
    backends: ClassVar[tuple[str, ...]] = ()

    def applies_to(self, model: Any) -> str | None:
        return None

    def run(self, model: Any, config: Config, request: Request) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.run")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # handlers registered as functions keep working
        return self.run(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.config.__name__}>"


class _FunctionHandler(Handler):
    """A plain function registered as a handler (the older shape): applies to every model."""

    def __init__(self, config_cls: type[Config], fn: Callable[..., Any]):
        self.config, self.fn = config_cls, fn  # type: ignore[misc]

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


_REGISTRIES: dict[str, Registry] = {}


def registries() -> dict[str, Registry]:
    """Every verb's registry by verb name (``"prune"``, ``"quantize"``, ...), for contract tests.

    The packages that create them are loaded by ``slimstack/__init__`` (``slimstack._plugins``); the
    base imports none of them.
    """
    return dict(_REGISTRIES)


class Registry:
    """Maps a config class to the handler(s) that apply it; the only place a verb dispatches on type."""

    def __init__(self, verb: str):
        self.verb = verb
        self._handlers: dict[type[Config], list[Handler]] = {}
        _REGISTRIES.setdefault(verb, self)

    def add(self, handler: Handler) -> Handler:
        """Register a :class:`Handler` instance for ``handler.config``."""
        if not isinstance(handler, Handler) or not isinstance(getattr(handler, "config", None), type):
            raise TypeError(f"ss.{self.verb} registry takes Handler instances with a config class, got {handler!r}")
        self._handlers.setdefault(handler.config, []).append(handler)
        return handler

    def register(self, config_cls: type[Config]) -> Callable[[H], H]:
        """Decorator for a :class:`Handler` subclass (instantiated once) or a plain function."""

        def deco(obj: H) -> H:
            if isinstance(obj, type) and issubclass(obj, Handler):
                inst = obj()
                inst.config = config_cls  # type: ignore[misc]
                self.add(inst)
            else:
                self.add(_FunctionHandler(config_cls, obj))  # type: ignore[arg-type]
            return obj

        return deco

    def handlers_of(self, config_cls: type[Config]) -> list[Handler]:
        """The handlers of the nearest registered class in ``config_cls``'s MRO ([] when none)."""
        for cls in config_cls.__mro__:
            if cls in self._handlers:
                return list(self._handlers[cls])
        return []

    def handlers_for(self, config: Any) -> list[Handler]:
        """The handlers for ``config``'s type; a ConfigError naming the configs this verb takes otherwise."""
        found = self.handlers_of(type(config))
        if found:
            return found
        names = sorted(c.__name__ for c in self._handlers)
        raise ConfigError(
            f"ss.{self.verb} does not take {type(config).__name__!r}; pass one of: "
            f"{', '.join(names) or '(none registered)'}.{close_matches(type(config).__name__, names)}"
        )

    def dispatch(self, config: Any, model: Any) -> Handler:
        """The first handler for ``config`` whose :meth:`Handler.applies_to` accepts ``model``."""
        from .errors import ModelError

        reasons = []
        for h in self.handlers_for(config):
            why = h.applies_to(model)
            if why is None:
                return h
            reasons.append(why)
        raise ModelError(f"ss.{self.verb} with {type(config).__name__} cannot take a {type(model).__name__}: "
                         + "; ".join(reasons))

    def lookup(self, config: Any) -> Callable[..., Any]:
        """The first handler for ``config`` (a callable); kept for the function-shaped handlers."""
        h = self.handlers_for(config)[0]
        return h.fn if isinstance(h, _FunctionHandler) else h

    def configs(self) -> list[type[Config]]:
        """Every config class with a handler, in registration order."""
        return list(self._handlers)

    def __contains__(self, config_cls: type[Config]) -> bool:
        return config_cls in self._handlers

    def __iter__(self):
        return iter(self._handlers)
