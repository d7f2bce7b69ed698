"""Every example recipe validates; `slimstack demo` (tests/test_cli.py) runs all of them end to end."""

from pathlib import Path

import pytest

from slimstack.demo import EXAMPLE_RECIPES, _recipe_path
from slimstack.recipe import load_recipe

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_examples_folder_matches_the_packaged_recipes():
    """Every recipe the demo runs is in examples/, word for word; examples/ may hold more (not run by the demo)."""
    stems = {p.stem: p for p in EXAMPLES}
    assert set(EXAMPLE_RECIPES) <= set(stems)
    for name in EXAMPLE_RECIPES:
        assert stems[name].read_text() == _recipe_path(name).read_text()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates(path):
    recipe = load_recipe(path)
    assert recipe.steps
    if path.stem in EXAMPLE_RECIPES:  # the demo's recipes also drive `slimstack optimize`
        assert recipe.search is not None
