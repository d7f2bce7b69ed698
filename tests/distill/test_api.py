"""The distillation surface from API.md: names exist at the top level and are documented."""

import importlib
import inspect

import slimstack as ss

# ``ss.distill`` is the verb, so the subpackage is reached through the import system
# (``from slimstack.distill import EnsembleTeacher`` works as usual).
sd = importlib.import_module("slimstack.distill")


def test_public_names_exist_and_are_documented():
    for name in ("distill", "DistillConfig", "DistillResult"):
        assert name in ss.__all__ and (getattr(ss, name).__doc__ or "").strip()
    assert "shrink" in ss.zoo.__all__ and ss.zoo.shrink.__doc__
    for name in sd.__all__:
        obj = getattr(sd, name)
        assert (obj.__doc__ or "").strip(), name
    assert "train" in inspect.signature(ss.distill).parameters
    assert ss.DistillConfig.kind == "distill"


def test_config_registered_for_recipes():
    from slimstack._config import registered_configs

    assert registered_configs("distill") == {"DistillConfig": ss.DistillConfig}
