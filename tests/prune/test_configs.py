import pytest

import slimstack as ss
from slimstack._config import registered_configs
from slimstack.errors import ConfigError

PRUNE_CONFIGS = registered_configs("prune")


def test_the_four_configs_are_registered():
    assert {"MagnitudePruning", "NMPruning", "StructuredPruning", "TreePruning"} <= set(PRUNE_CONFIGS)


@pytest.mark.parametrize("name", sorted(PRUNE_CONFIGS))
def test_config_round_trips(name):
    cls = PRUNE_CONFIGS[name]
    cfg = cls()
    assert ss.config_from_dict(cfg.to_dict()) == cfg


def test_round_trip_keeps_non_default_fields():
    cfg = ss.StructuredPruning(ratio=0.3, layer_ratios={"features.3": 0.2}, ignore=("classifier",), round_to=8,
                               tolerance=0.01, recovery="distill")
    back = ss.config_from_dict(cfg.to_dict())
    assert back == cfg and back.ignore == ("classifier",) and back.layer_ratios == {"features.3": 0.2}


@pytest.mark.parametrize("make, match", [
    (lambda: ss.StructuredPruning(ratio=1.0), r"ratio=1\.0 must be a number in \[0, 1\)"),
    (lambda: ss.StructuredPruning(ratio=-0.1), r"ratio=-0\.1"),
    (lambda: ss.MagnitudePruning(sparsity=1.5), r"sparsity=1\.5"),
    (lambda: ss.StructuredPruning(importance="l3"), r"importance='l3'.*'l1', 'l2', 'taylor', 'random'"),
    (lambda: ss.StructuredPruning(layer_ratios={"a": 1.0}), r"layer_ratios\['a'\]=1\.0"),
    (lambda: ss.StructuredPruning(round_to=0), r"round_to=0 must be a positive integer"),
    (lambda: ss.StructuredPruning(recovery="retrain"), r"recovery='retrain'.*'none', 'finetune', 'distill'"),
    (lambda: ss.NMPruning(n=4, m=4), r"n=4 must be smaller than m=4"),
    (lambda: ss.MagnitudePruning(schedule="iterative"), r"recovery='none'.*set recovery='finetune'"),
    (lambda: ss.TreePruning(ccp_alpha=-1), r"ccp_alpha=-1 must be 'auto' or a non-negative number"),
])
def test_bad_values_name_field_value_and_fix(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_prune_rejects_a_non_prune_config(cnn):
    with pytest.raises(ConfigError, match="ss.prune does not take 'DistillLike'"):
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class DistillLike(ss.Config):
            pass

        ss.prune(cnn, DistillLike())
