"""YAML recipes: validate, run (resumable) and optimize a compress/combine pipeline under one budget."""

from ._optimize import optimize_recipe
from ._runner import run_recipe, validate_recipe
from ._schema import STEP_KINDS, Recipe, load_recipe

__all__ = ["Recipe", "STEP_KINDS", "load_recipe", "optimize_recipe", "run_recipe", "validate_recipe"]
