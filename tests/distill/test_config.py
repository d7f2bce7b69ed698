"""DistillConfig: validation messages name the field, the value and the fix; configs round-trip."""

import pytest

import slimstack as ss
from slimstack._config import config_from_dict


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0}, r"temperature=0 must be a number > 0"),
        ({"temperature": -2.0}, r"temperature=-2.0 must be a number > 0"),
        ({"alpha": 1.5}, r"alpha=1.5 must lie in \[0, 1\]"),
        ({"loss": "kl"}, r"loss='kl' is not one of: auto, kd, mse, cosine"),
        ({"epochs": 0}, r"epochs=0 must be a positive integer"),
        ({"lr": 0.0}, r"lr=0.0 must be 'auto' or a number > 0"),
        ({"warmup": 1.0}, r"warmup=1.0 is a share of the steps"),
        ({"features": ("layer1",)}, r"features entry 'layer1' must be a \(student_layer, teacher_layer\) pair"),
        ({"patience": 0}, r"patience=0 must be a positive integer or None"),
    ],
)
def test_bad_values_are_named_with_the_fix(kwargs, match):
    with pytest.raises(ss.ConfigError, match=match):
        ss.DistillConfig(**kwargs)


def test_round_trip_through_dict_keeps_feature_pairs():
    cfg = ss.DistillConfig(temperature=2.0, alpha=0.7, features=(("a", "b"),), epochs=3, max_length=64)
    d = cfg.to_dict()
    assert d["type"] == "DistillConfig" and d["data"]["features"] == [["a", "b"]]
    back = config_from_dict(d)
    assert back == cfg and back.features == (("a", "b"),)
