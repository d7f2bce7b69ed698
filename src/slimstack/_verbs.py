"""Subpackages that are also verbs: ``ss.quantize(model, cfg)`` and ``import slimstack.quantize``.

Each verb shares its name with the subpackage that implements it. Binding the function over the
package (``from .quantize import quantize``) made ``import slimstack.quantize`` hand back the
function, so documented paths such as ``ss.quantize.backends`` could not work. Instead the package
module itself becomes callable: calling it calls the verb, and attribute access reaches the package.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["make_verb_module"]


class VerbModule(types.ModuleType):
    """A package module that, when called, runs its verb (``__verb__``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__verb__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<slimstack verb {self.__name__}{self.__signature__}: package {self.__name__!r}>"


def make_verb_module(module_name: str, verb: Callable[..., Any]) -> None:
    """Make the already-imported module ``module_name`` callable as ``verb``."""
    module = sys.modules[module_name]
    module.__class__ = VerbModule
    module.__verb__ = verb
    module.__signature__ = inspect.signature(verb)
    module.__wrapped__ = verb
