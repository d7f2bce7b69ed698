import dataclasses

import pytest

import slimstack as ss
from slimstack._config import Config, Registry, config_from_dict, register_config


@register_config
@dataclasses.dataclass(frozen=True)
class _ToyConfig(Config):
    kind = "toy"
    ratio: float = 0.5
    layers: tuple[str, ...] = ()

    def validate(self):
        if not 0 <= self.ratio < 1:
            raise ss.ConfigError(f"ratio={self.ratio} is outside [0, 1); pass e.g. ratio=0.5")


def test_round_trip():
    c = _ToyConfig(ratio=0.25, layers=("a", "b"))
    d = c.to_dict()
    assert d == {"type": "_ToyConfig", "version": 1, "data": {"ratio": 0.25, "layers": ["a", "b"]}}
    assert config_from_dict(d) == c
    assert _ToyConfig.from_dict({"type": "_ToyConfig", "ratio": 0.1}).ratio == 0.1


@pytest.mark.parametrize(
    "payload, match",
    [
        ({"type": "_ToyConfg"}, r"unknown config type '_ToyConfg'.*Did you mean '_ToyConfig'"),
        ({"type": "_ToyConfig", "data": {"ratoi": 0.1}}, r"unknown field of _ToyConfig 'ratoi'.*'ratio'"),
        ({"type": "_ToyConfig", "data": {"ratio": 1.5}}, r"ratio=1.5 is outside \[0, 1\)"),
        ({"type": "_ToyConfig", "version": 9}, r"newer than this slimstack"),
        ("nope", r"mapping with a 'type' key"),
    ],
)
def test_bad_configs(payload, match):
    with pytest.raises(ss.SlimstackError, match=match):
        config_from_dict(payload)


def test_registry_lookup_names_the_allowed_configs():
    reg = Registry("toy")

    @reg.register(_ToyConfig)
    def handler(cfg):
        return cfg.ratio

    assert reg.lookup(_ToyConfig(ratio=0.3))(_ToyConfig(ratio=0.3)) == 0.3
    with pytest.raises(ss.ConfigError, match=r"ss.toy does not take 'int'; pass one of: _ToyConfig"):
        reg.lookup(3)
