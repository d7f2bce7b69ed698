"""ss.prune dispatches through its registry: handlers, applies_to, Request vocabulary, importance registry."""

import numpy as np
import pytest
import torch
from sklearn.tree import DecisionTreeClassifier
from torch import nn

import slimstack as ss
from slimstack._config import Handler, Request
from slimstack._result import LayerRecord, Result
from slimstack.prune import PruneResult
from slimstack.prune._importance import IMPORTANCES, Importance, register_importance
from slimstack.prune._registry import HANDLERS


class _FakeLM(nn.Module):
    """Looks like a slimstack CausalLM (logprobs, generate, perplexity) and is an nn.Module."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        return self.lin(x)

    def logprobs(self, *a):
        raise NotImplementedError

    def generate(self, *a):
        raise NotImplementedError

    def perplexity(self, *a):
        raise NotImplementedError


def test_every_config_has_a_handler_with_the_protocol():
    for cls in (ss.MagnitudePruning, ss.NMPruning, ss.StructuredPruning, ss.TreePruning):
        handlers = HANDLERS.handlers_for(cls())
        assert handlers and all(isinstance(h, Handler) and h.config is cls and h.backends for h in handlers)


def test_torch_handlers_refuse_causal_lms_and_a_second_handler_is_chosen():
    lm = _FakeLM()
    with pytest.raises(ss.ModelError, match=r"ss.prune with MagnitudePruning cannot take a _FakeLM: .*causal LM"):
        ss.prune(lm, ss.MagnitudePruning())

    class LMMagnitude(Handler):
        backends = ("torch",)

        def applies_to(self, model):
            return None if hasattr(model, "perplexity") else "not a causal LM"

        def run(self, model, config, request):
            assert isinstance(request, Request)
            return PruneResult(model, [LayerRecord("lin", "skipped", "weights", 64, 64, "lm handler")], {"lm": True})

    HANDLERS.register(ss.MagnitudePruning)(LMMagnitude)
    added = HANDLERS.handlers_for(ss.MagnitudePruning())[-1]
    try:
        assert ss.prune(lm, ss.MagnitudePruning()).summary == {"lm": True}
        r = ss.prune(nn.Sequential(nn.Linear(8, 8)), ss.MagnitudePruning(sparsity=0.5))  # networks: the first one
        assert r.records[0].action == "pruned" and r.records[0].after == 32
    finally:
        HANDLERS._handlers[ss.MagnitudePruning].remove(added)


def test_wrong_model_kind_names_the_config_to_use(digits):
    tree = DecisionTreeClassifier(random_state=0).fit(digits[0].X.reshape(len(digits[0].X), -1), digits[0].y)
    with pytest.raises(ss.ModelError, match="StructuredPruning takes a torch nn.Module.*use ss.TreePruning"):
        ss.prune(tree, ss.StructuredPruning())
    with pytest.raises(ss.ModelError, match="TreePruning prunes DecisionTreeClassifier.*got Linear"):
        ss.prune(nn.Linear(2, 2), ss.TreePruning())


@pytest.mark.parametrize("make, match", [
    (lambda: ss.StructuredPruning(importance="l22"), r"importance='l22' is not allowed.*Did you mean 'l2'"),
    (lambda: ss.StructuredPruning(importance="taylr"), r"Did you mean 'taylor'"),
    (lambda: ss.MagnitudePruning(scope="globl"), r"scope='globl'.*Did you mean 'global'"),
    (lambda: ss.MagnitudePruning(schedule="iterate"), r"Did you mean 'iterative'"),
    (lambda: ss.NMPruning(recovery="distil"), r"recovery='distil'.*Did you mean 'distill'"),
    (lambda: ss.StructuredPruning(tolerance=0.01, absolute_tolerance=0.01), r"both set; keep one"),
    (lambda: ss.StructuredPruning(tolerance=-0.1), r"StructuredPruning.tolerance=-0.1 must be a number in \[0"),
    (lambda: ss.TreePruning(tolerance=2.0), r"TreePruning.tolerance=2.0 must be a number in \[0, 1\]"),
])
def test_unknown_names_give_the_closest_one(make, match):
    with pytest.raises(ss.ConfigError, match=match):
        make()


def test_a_registered_importance_is_accepted_and_used(cnn, digits):
    base = IMPORTANCES["l1"]
    register_importance(Importance("l1_again", base.torch_pruning, base.encoder))
    try:
        r = ss.prune(cnn, ss.StructuredPruning(ratio=0.5, importance="l1_again"), example_inputs=digits[0].X[:2])
        l1 = ss.prune(cnn, ss.StructuredPruning(ratio=0.5, importance="l1"), example_inputs=digits[0].X[:2])
        x = torch.as_tensor(digits[1].X[:16])
        assert torch.equal(r.model(x), l1.model(x))
        assert "lowest-l1_again" in r.layer("features.0").reason
    finally:
        IMPORTANCES.pop("l1_again")
    with pytest.raises(ss.ConfigError, match="importance='l1_again' is not allowed"):
        ss.StructuredPruning(importance="l1_again")


def test_train_is_data_and_calibration_gives_example_inputs(cnn, digits):
    train, test = digits
    cfg = ss.StructuredPruning(ratio=0.5, importance="taylor", taylor_batches=2)
    old = ss.prune(cnn, cfg, data=train)
    new = ss.prune(cnn, cfg, train=train)
    x = torch.as_tensor(test.X[:16])
    assert torch.equal(old.model(x), new.model(x))
    with pytest.raises(ss.ConfigError, match="both data= and train="):
        ss.prune(cnn, cfg, data=train, train=train)
    cal = ss.prune(cnn, ss.StructuredPruning(ratio=0.5), calibration=test)
    given = ss.prune(cnn, ss.StructuredPruning(ratio=0.5), example_inputs=test.X[:2])
    assert torch.equal(cal.model(x), given.model(x)) and cal.model.features[0].out_channels == 8


def test_prune_result_is_the_shared_result(cnn, digits):
    r = ss.prune(cnn, ss.MagnitudePruning(sparsity=0.5))
    assert isinstance(r, Result) and r.record is r.records and r.layer("features.0") is r.record_for("features.0")
    model, records = r
    assert model is r.model and records is r.records
    d = r.to_dict()
    assert d["verb"] == "prune" and len(d["records"]) == len(r.records) and d["summary"]["params"] > 0
    assert {x.action for x in r.pruned} == {"pruned"} and r.skipped == []
    assert d["records"][0]["extra"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(KeyError, match="no record for layer 'nope'"):
        r.layer("nope")


def test_tree_tolerance_is_relative_to_the_best_score():
    tr = ss.datasets.load("breast_cancer", split="train", seed=0)
    va = ss.datasets.load("breast_cancer", split="val", seed=0)
    tree = DecisionTreeClassifier(random_state=0).fit(tr.X, tr.y)
    r = ss.prune(tree, ss.TreePruning(tolerance=0.05), val=va)
    path = r.summary["path"]
    best = max(p["score"] for p in path)
    within = [p["ccp_alpha"] for p in path if p["score"] >= best * (1 - 0.05)]
    assert r.summary["ccp_alpha"] == max(within)
    assert r.summary["score"] == pytest.approx(ss.measure.score(r.model, va))
    assert np.isclose(r.summary["score_before"], ss.measure.score(tree, va))
