"""Each verb shares its name with its subpackage: both must work (issue 15, item 3)."""

import importlib
import inspect

import numpy as np
import pytest
import torch

import slimstack as ss

VERBS = ["quantize", "prune", "distill", "merge", "measure", "compile"]


@pytest.mark.parametrize("name", VERBS)
def test_import_gives_the_package_and_calling_it_runs_the_verb(name):
    package = importlib.import_module(f"slimstack.{name}")
    assert getattr(ss, name) is package
    assert package.__file__.endswith(f"{name}/__init__.py")
    assert callable(package)
    verb = getattr(package, name)
    assert inspect.signature(package) == inspect.signature(verb)


def test_documented_subpackage_paths_resolve():
    import slimstack.quantize as q

    assert q.backends.torch.QuantLinear is ss.quantize.QuantLinear
    assert ss.prune.LayerRecord is importlib.import_module("slimstack.prune._result").LayerRecord


def test_calling_the_package_is_the_verb():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).eval()
    r = ss.prune(model, ss.MagnitudePruning(sparsity=0.5))
    zeros = sum(int((p == 0).sum()) for n, p in r.model.named_parameters() if n.endswith("weight"))
    assert zeros == (30 + 10) // 2
    wide = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3)).eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(32, 16)).astype(np.float32))
    q = ss.quantize(wide, ss.DynamicInt8(backend="torch"), example_inputs=x)
    assert q.record is not None
    with torch.no_grad():
        want, got = wide(x).numpy(), q.model(x).numpy()
    # int8 error on an untrained net: outputs track the float ones closely, not exactly
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.98
    assert not np.array_equal(got, want)
