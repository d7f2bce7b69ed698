"""Compile fitted ensembles, cascades and models into one ONNX Runtime graph (``ss.compile``)."""

from ._compile import CompiledAdapter, CompiledFormat, compile
from ._errors import CompileWarning
from ._members import register_converter
from ._model import CompiledModel

__all__ = ["compile", "CompiledModel", "CompileWarning", "CompiledAdapter", "CompiledFormat", "register_converter"]

from .._verbs import make_verb_module as _make_verb_module

_make_verb_module(__name__, compile)  # ss.compile(est) runs the verb; ss.compile.<name> reaches this package
