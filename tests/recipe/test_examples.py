"""Every example recipe validates; `slimstack demo` (tests/test_cli.py) runs all of them end to end."""

from pathlib import Path

import pytest

from slimstack.demo import EXAMPLE_RECIPES, _recipe_path
from slimstack.recipe import load_recipe

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_examples_folder_matches_the_packaged_recipes():
    assert sorted(p.stem for p in EXAMPLES) == sorted(EXAMPLE_RECIPES)
    for p in EXAMPLES:
        assert p.read_text() == _recipe_path(p.stem).read_text()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates(path):
    recipe = load_recipe(path)
    assert recipe.steps and recipe.search is not None
