"""Layering (issue #15 item 8), read from the source with ``ast``: no import is executed.

1. The base (config, errors, validation, results, the training loop, io, datasets) imports no technique,
   no model zoo and nothing above it, at module level or inside a function: packages above the base register
   what they add (save formats, architectures, measure tasks) through the base's public APIs.
2. No module imports another package's private module (``from ..measure._measure import ...`` from
   outside ``measure``); the shared core modules at the top (``slimstack._config``, ``_result``,
   ``_utils``, ``_validate``, ``_arch``, ``_verbs``, ``_training``) are the exception, being everyone's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "slimstack"

BASE = ["_config.py", "errors.py", "_utils.py", "_validate.py", "_result.py", "_arch.py", "_training.py", "_supervised.py",
        "io", "datasets"]
ABOVE_BASE = ("prune", "quantize", "distill", "merge", "zoo", "llm", "ensemble", "compile", "recipe", "report",
              "measure", "cli", "demo", "_plugins")

# Private imports across packages that other engineers' branches remove; the lead empties this at merge.
# (importer module, imported private module): owner
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {}


def _modules(root: Path = SRC):
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        yield ".".join(parts[:-1] if is_pkg else parts), is_pkg, path


def _imports(module: str, is_pkg: bool, path: Path):
    """(line, absolute module name) of every import in the file, at any depth, plus import_module("...")."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from . import prune`` imports the package slimstack.prune
                yield node.lineno, f"{target}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value
            elif isinstance(arg, ast.JoinedStr):  # f"slimstack.{pkg}": a technique named at run time
                yield node.lineno, "slimstack.<computed>"


def _base_files():
    for entry in BASE:
        path = SRC / entry
        yield from (_modules(path) if path.is_dir() else [m for m in _modules() if m[2] == path])


def base_violations() -> list[str]:
    bad = []
    for module, is_pkg, path in _base_files():
        for line, target in _imports(module, is_pkg, path):
            parts = target.split(".")
            if parts[0] == "slimstack" and len(parts) > 1 and (parts[1] in ABOVE_BASE or parts[1] == "<computed>"):
                bad.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    return bad


def private_violations() -> list[tuple[str, str, str]]:
    bad = []
    for module, is_pkg, path in _modules():
        own = module.split(".")[1] if module.count(".") else ""
        for line, target in _imports(module, is_pkg, path):
            parts = target.split(".")
            if parts[0] != "slimstack" or len(parts) < 3 or parts[1] == own or parts[1].startswith("_"):
                continue
            private = next((i for i, p in enumerate(parts[2:], 2) if p.startswith("_") and not p.startswith("__")), None)
            if private is not None:
                bad.append((module, ".".join(parts[: private + 1]), f"{path.relative_to(SRC)}:{line}"))
    return bad


def test_the_base_imports_nothing_above_it():
    assert not base_violations(), "the base imports techniques or the zoo:\n" + "\n".join(base_violations())


def test_no_module_imports_another_packages_private_module():
    found = private_violations()
    new = [f"{where}: {m} imports {t}" for m, t, where in found if (m, t) not in ALLOWED_PRIVATE]
    assert not new, "import the package's public name instead:\n" + "\n".join(new)


def test_the_allow_list_holds_only_live_entries():
    live = {(m, t) for m, t, _ in private_violations()}
    stale = sorted(set(ALLOWED_PRIVATE) - live)
    assert not stale, f"fixed: remove from ALLOWED_PRIVATE: {stale}"


@pytest.mark.parametrize("source, expected", [
    ("from ..zoo._models import X\n", "slimstack.zoo._models"),
    ("def f():\n    from ..prune import prune\n", "slimstack.prune"),
    ("import importlib\nimportlib.import_module('slimstack.llm')\n", "slimstack.llm"),
])
def test_the_checker_sees_imports_in_every_form(tmp_path, source, expected):
    path = tmp_path / "x.py"
    path.write_text(source)
    assert expected in {t for _, t in _imports("slimstack.io._x", False, path)}


def test_import_slimstack_io_alone_loads_zoo_and_lm_formats(tmp_path):
    """Registration is explicit (slimstack._plugins), and ``import slimstack.io`` runs it."""
    import subprocess
    import sys

    code = ("import slimstack.io as sio; fs = set(sio.formats()); "
            "assert {'sentence_encoder', 'causal_lm', 'gguf', 'torch_int8', 'sparse', 'compiled'} <= fs, fs; "
            "assert 'DigitsMLP' in sio.architectures(); "
            "import slimstack.measure._score as s; assert s.task_comparer('lm') is not None")
    env = {"PYTHONPATH": str(SRC.parent), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
