"""The public ensemble names exist at the top level, are in __all__ and carry an example."""

from __future__ import annotations

import pytest

import slimstack as ss
import slimstack.ensemble as ens


@pytest.mark.parametrize("name", ens.__all__)
def test_exported_and_documented(name):
    obj = getattr(ss, name)
    assert obj is getattr(ens, name)
    assert name in ss.__all__
    doc = obj.__doc__ or ""
    assert len(doc.strip()) > 40, f"{name} needs a docstring that says why"


@pytest.mark.parametrize("name", ["VotingEnsemble", "EnsembleSelection", "StackingEnsemble", "TorchClassifier",
                                  "OOFCache", "Frozen", "VotingEnsembleRegressor", "StackingEnsembleRegressor",
                                  "TorchRegressor"])
def test_has_example(name):
    assert "Examples" in getattr(ss, name).__doc__


def test_docstring_examples_run():
    import doctest

    import slimstack.ensemble._members as members
    import slimstack.ensemble._oof as oof
    import slimstack.ensemble._selection as selection
    import slimstack.ensemble._stacking as stacking
    import slimstack.ensemble._voting as voting

    for mod in (members, oof, selection, stacking, voting):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, mod.__name__
