"""Every recipe step records one shape, ``{"verb", "summary", "records", ...}``, and the report reads it."""

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.recipe import STEP_KINDS
from slimstack.recipe._record import step_record
from slimstack.recipe._steps import STEPS, StepContext, parse_step, run_step
from slimstack.report import record_actions


def _split(seed=3, n=240, d=6, k=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    parts = np.split(rng.permutation(n), [n // 2, 3 * n // 4])
    return [ss.datasets.from_arrays(X[i], y[i]) for i in parts]


@pytest.fixture(scope="module")
def ctx_and_model():
    train, val, test = _split()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    model = ss.zoo.train(model, train, epochs=5, seed=0)
    ctx = StepContext(original=model, train=train, val=val, test=test, example_inputs=torch.as_tensor(train.X[:1]))
    return ctx, model


@pytest.mark.parametrize("kind, fields, action", [
    ("prune", {"method": "MagnitudePruning", "sparsity": 0.5}, "pruned"),
    ("quantize", {"method": "DynamicInt8", "backend": "torch"}, "quantized"),
    ("quantize", {"type": "WeightOnly", "method": "rtn", "backend": "torch"}, "float"),  # 6 inputs: no group fits
    ("ensemble", {"method": "VotingEnsemble", "members": {"net": "current", "nb": {"estimator": "GaussianNB"}}},
     "member"),
    ("merge", {"method": "uniform", "models": {"a": "current", "b": "original"}}, None),
])
def test_every_step_records_verb_summary_and_records(ctx_and_model, kind, fields, action):
    ctx, model = ctx_and_model
    new, record = run_step(kind, fields, model, ctx)
    assert new is not model
    assert record["verb"] == kind and isinstance(record["summary"], dict) and isinstance(record["records"], list)
    counts = record_actions(record)
    if action is not None:
        assert counts.get(action, 0) >= 1, counts
        assert sum(counts.values()) == len(record["records"])


def test_weight_only_named_with_type_keeps_its_method_field():
    config, _ = parse_step("quantize", {"type": "WeightOnly", "method": "rtn", "backend": "torch"})
    assert config == ss.WeightOnly(method="rtn", backend="torch")


def test_one_step_registry_lists_every_kind_in_order():
    assert tuple(STEPS) == STEP_KINDS == ("prune", "distill", "quantize", "ensemble", "cascade", "merge", "compile")
    with pytest.raises(ss.ConfigError, match=r"unknown step 'prun'.*prune"):
        parse_step("prun", {})


def test_step_record_reads_a_result_and_the_older_shapes():
    from slimstack._result import LayerRecord, Result

    class PruneLike(Result):
        verb = "prune"

    r = PruneLike(model=None, records=[LayerRecord("fc", "pruned", "weights", 10, 5)], summary={"ratio": 0.5})
    d = step_record("prune", r, note="x")
    assert d["records"][0]["layer"] == "fc" and d["summary"] == {"ratio": 0.5} and d["note"] == "x"
    assert record_actions(d) == {"pruned": 1}
    with pytest.raises(TypeError, match="no records"):
        step_record("prune", object())
