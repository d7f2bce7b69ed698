"""The packages that extend the base's registries, loaded explicitly by ``slimstack/__init__``.

The base (``_config``, ``errors``, ``io``, ``datasets``) imports none of them. Each registers what it
adds through a public base API when it is imported: save formats (``slimstack.io.register_format``),
module architectures (``slimstack.io.register_architecture``), measurement adapters and tasks
(``slimstack.measure.register_adapter``/``register_task``), config types and verb handlers
(``slimstack._config.register_config``/``Registry``). Importing any ``slimstack`` module runs
``slimstack/__init__`` first, so ``import slimstack.io`` alone can load a saved zoo or LM model.
"""

from __future__ import annotations

import importlib

__all__ = ["PLUGINS", "load"]

# Order matters only for speed of the first import; each package imports what it needs itself.
PLUGINS = ("measure", "zoo", "llm", "prune", "quantize", "distill", "merge", "ensemble", "compile")


def load() -> None:
    """Import every plugin package (each registers its formats, adapters, configs and handlers)."""
    for name in PLUGINS:
        importlib.import_module(f"{__package__}.{name}")
