"""YAML reading that remembers the line of every key, so errors can point at the recipe line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

__all__ = ["load_yaml"]

Path_ = tuple[Any, ...]


def load_yaml(source: str | Path) -> tuple[Any, dict[Path_, int], str]:
    """Parse YAML safely; return (data, {key path: line number}, file label)."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))):
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"recipe file {str(path)!r} does not exist; pass the path of a .yaml recipe")
        text, label = path.read_text(), str(path)
    else:
        text, label = str(source), "<recipe>"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{label}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    lines: dict[Path_, int] = {}
    data = _walk(node, (), lines) if node is not None else {}
    return data, lines, label


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for k, v in node.value:
            key = _scalar(k)
            out[key] = _walk(v, path + (key,), lines)
            lines[path + (key,)] = k.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, path + (i,), lines) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)
