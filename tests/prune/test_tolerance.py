"""``ss.prune(tolerance=...)``: the verb-level tolerance of ss.quantize, relative, through the Request."""

import numpy as np
import pytest
import torch
from sklearn.tree import DecisionTreeClassifier

import slimstack as ss


@pytest.fixture(scope="module")
def tree_data():
    tr = ss.datasets.load("breast_cancer", split="train", seed=0)
    va = ss.datasets.load("breast_cancer", split="val", seed=0)
    return DecisionTreeClassifier(random_state=0).fit(tr.X, tr.y), va


def test_tree_tolerance_from_the_verb_equals_the_config_field(tree_data):
    tree, va = tree_data
    by_verb = ss.prune(tree, ss.TreePruning(), val=va, tolerance=0.05)
    by_config = ss.prune(tree, ss.TreePruning(tolerance=0.05), val=va)
    assert by_verb.summary["ccp_alpha"] == by_config.summary["ccp_alpha"] > 0
    strict = ss.prune(tree, ss.TreePruning(), val=va)  # no tolerance: the best-scoring alpha
    assert by_verb.summary["nodes"] < strict.summary["nodes"]
    assert "within 5.00% of the best" in by_verb.records[0].reason


def test_structured_tolerance_from_the_verb_runs_the_relative_sensitivity_analysis(cnn, digits):
    train, test = digits
    cfg = ss.StructuredPruning(ratio=0.75, sensitivity_ratios=(0.25, 0.5))
    r = ss.prune(cnn, cfg, train=train, val=test, tolerance=0.02)
    sens = r.summary["sensitivity"]
    assert sens["tolerance_kind"] == "relative" and sens["allowed_drop"] == pytest.approx(0.02 * sens["baseline"])
    same = ss.prune(cnn, cfg.replace(tolerance=0.02), train=train, val=test)
    x = torch.as_tensor(test.X[:32])
    assert torch.equal(r.model(x), same.model(x)) and same.summary["ratios"] == r.summary["ratios"]


def test_two_different_tolerances_and_unused_ones_are_refused(cnn, digits, tree_data):
    tree, va = tree_data
    with pytest.raises(ss.ConfigError, match=r"ss.prune\(tolerance=0.01\) and TreePruning\(tolerance=0.05\) disagree"):
        ss.prune(tree, ss.TreePruning(tolerance=0.05), val=va, tolerance=0.01)
    with pytest.raises(ss.ConfigError, match=r"StructuredPruning\(absolute_tolerance=0.02\) disagree"):
        ss.prune(cnn, ss.StructuredPruning(absolute_tolerance=0.02), train=digits[0], val=digits[1], tolerance=0.02)
    with pytest.raises(ss.ConfigError, match=r"tolerance=0.01 is not used by MagnitudePruning.*StructuredPruning, "
                                             r"TreePruning"):
        ss.prune(cnn, ss.MagnitudePruning(sparsity=0.5), tolerance=0.01)
    with pytest.raises(ss.ConfigError, match=r"tolerance=1.5 must be a relative quality loss in \(0, 1\)"):
        ss.prune(tree, ss.TreePruning(), val=va, tolerance=1.5)
    assert np.isfinite(ss.prune(tree, ss.TreePruning(tolerance=0.05), val=va, tolerance=0.05).summary["ccp_alpha"])
