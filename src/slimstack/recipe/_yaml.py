"""YAML reading that remembers the line of every key, so errors can point at the recipe line.

Only plain YAML is accepted: mappings with scalar keys, sequences and scalars of the standard
tags. Anything a recipe never needs and that only widens the attack surface is refused with one
line naming the recipe line: non-standard tags (``!!python/name``, ``!!set``), merge keys
(``<<``), mapping or sequence keys, duplicate keys, aliases that refer to themselves, and
alias expansions beyond :data:`MAX_NODES` nodes (an "alias bomb" of nested anchors grows
exponentially when expanded; ``yaml.compose`` keeps aliases as shared nodes, so the limit is
checked while walking, before anything large is built).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["load_yaml", "MAX_NODES", "MAX_BYTES"]

Path_ = tuple[Any, ...]

MAX_NODES = 10_000  # a recipe has tens to hundreds of nodes; this bounds alias expansion
MAX_BYTES = 1_000_000
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}


def _read(path: Path) -> str:
    if path.is_dir():
        raise ConfigError(f"recipe {str(path)!r} is a folder; pass the path of a .yaml recipe file")
    raw = path.read_bytes()
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"recipe {str(path)!r} is {len(raw):,} bytes, more than the {MAX_BYTES:,} a recipe may have")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(raw) > 1 and b"\x00" in raw[:4]):
        raise ConfigError(f"recipe {str(path)!r} is UTF-16/UTF-32 encoded; save it as UTF-8 "
                          f"(e.g. `iconv -f UTF-16 -t UTF-8 {path.name} > fixed.yaml`)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"recipe {str(path)!r} is not UTF-8 text (byte {exc.start} cannot be decoded); "
                          "save it as UTF-8") from None


def load_yaml(source: str | Path) -> tuple[Any, dict[Path_, int], str]:
    """Parse YAML safely; return (data, {key path: line number}, file label)."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))):
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"recipe file {str(path)!r} does not exist; pass the path of a .yaml recipe")
        text, label = _read(path), str(path)
    else:
        text, label = str(source), "<recipe>"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines: dict[Path_, int] = {}
        data = _Walker(label, lines).walk(node, ()) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{label}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise ConfigError(f"{label}: nested too deeply to be a recipe") from None
    return data, lines, label


class _Walker:
    """Turns composed nodes into Python values, enforcing the rules in the module docstring."""

    def __init__(self, label: str, lines: dict[Path_, int]):
        self.label, self.lines, self.count = label, lines, 0
        self.active: set[int] = set()  # ids of nodes on the current path: a repeat is a cycle
        self.constructor = yaml.SafeLoader("")  # builds one scalar at a time (tags checked first)

    def _fail(self, node: yaml.Node, msg: str) -> ConfigError:
        return ConfigError(f"{self.label} line {node.start_mark.line + 1}: {msg}")

    def walk(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._fail(node, f"more than {MAX_NODES:,} values once aliases are expanded; a recipe is far "
                                   "smaller, so this looks like an alias bomb (nested &anchors/*aliases); write "
                                   "the values out instead")
        if id(node) in self.active:
            raise self._fail(node, "an alias refers to the mapping or list that contains it; a recipe cannot be "
                                   "recursive, write the values out instead")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                self._check_tag(node, _TAG + "seq")
                return [self.walk(v, path + (i,)) for i, v in enumerate(node.value)]
        finally:
            self.active.discard(id(node))
        raise self._fail(node, f"unsupported YAML node {type(node).__name__}")

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        self._check_tag(node, _TAG + "map")
        out: dict[Any, Any] = {}
        for k, v in node.value:
            if k.tag == _TAG + "merge":
                raise self._fail(k, "YAML merge keys (<<) are not supported in recipes; write the keys out")
            if not isinstance(k, yaml.ScalarNode):
                raise self._fail(k, "a key must be a plain name or number, not a mapping or list (a YAML complex "
                                    "key); write `name: value`")
            key = self._scalar(k)
            if key in out:
                raise self._fail(k, f"duplicate key {key!r} (first at line {self.lines[path + (key,)]}); YAML "
                                    "would silently keep the last one, so remove one of them")
            self.lines[path + (key,)] = k.start_mark.line + 1
            out[key] = self.walk(v, path + (key,))
        return out

    def _check_tag(self, node: yaml.Node, expected: str) -> None:
        if node.tag != expected:
            raise self._fail(node, f"the tag {node.tag!r} is not allowed in recipes; only plain YAML values "
                                   "(no !! tags)")

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _TAG + "timestamp":
            return node.value  # a date-like name stays the text written
        if node.tag not in _SCALAR_TAGS:
            raise self._fail(node, f"the tag {node.tag!r} is not allowed in recipes; only plain strings, numbers, "
                                   "booleans and null (no !! tags)")
        value = self.constructor.construct_object(node, deep=True)
        if isinstance(value, float) and not math.isfinite(value):
            raise self._fail(node, f"{node.value!r} is not a finite number; recipes take finite numbers only "
                                   "(e.g. 0.01)")
        return value
