"""Adding a quantization technique takes one file: this one (docs/adding-a-technique.md walks through it).

The fixture defines a whole new technique, ``Float16Weights`` (round every Linear's weights to
float16 precision), with nothing but public names: one config, one handler, one registration.
It is defined inside a fixture only so the registries are restored afterwards and the other tests
still see the four built-in configs; in a user's file the same lines sit at module level.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack import _config
from slimstack._config import config_from_dict
from slimstack.errors import ConfigError, ModelError


@pytest.fixture
def Float16Weights(monkeypatch):
    monkeypatch.setattr(_config, "_CONFIGS", dict(_config._CONFIGS))  # restored after the test
    monkeypatch.setattr(ss.quantize.REGISTRY, "_handlers", dict(ss.quantize.REGISTRY._handlers))

    # ---- the new technique: everything below is what its file holds --------------------------
    @ss.quantize.register_config
    @dataclasses.dataclass(frozen=True)
    class Float16Weights(ss.quantize.QuantConfig):
        """Round Linear weights to float16 precision (the model still computes in float32)."""

        backend: str = "torch"
        min_features: int = 1  # Linears with fewer inputs stay float

        def validate(self) -> None:
            super().validate()
            if not isinstance(self.min_features, int) or self.min_features < 1:
                raise ConfigError(f"Float16Weights.min_features={self.min_features!r} must be a positive integer")

    @ss.quantize.REGISTRY.register(Float16Weights)
    class Float16WeightsHandler(ss.quantize.Handler):
        backends = ("torch",)

        def applies_to(self, model):
            return None if isinstance(model, torch.nn.Module) else "Float16Weights rounds torch modules"

        def run(self, model, config, request):
            out = copy.deepcopy(model)  # the caller's model is never modified
            layers = []
            for name, m in out.named_modules():
                if not isinstance(m, torch.nn.Linear):
                    continue
                if m.in_features < config.min_features or any(s in name for s in config.skip):
                    layers.append({"name": name, "type": "Linear", "status": "float",
                                   "reason": "listed in config.skip" if any(s in name for s in config.skip)
                                   else f"in_features={m.in_features} < min_features={config.min_features}"})
                    continue
                with torch.no_grad():
                    m.weight.copy_(m.weight.half().float())
                layers.append({"name": name, "type": "Linear", "status": "quantized", "bits": 16})
            record = ss.quantize.QuantRecord(config=config.to_dict(), backend="torch", backend_reason="requested",
                                             layers=layers)
            if request.val is not None:  # val= scores, never trains
                record.quality_metric = ss.measure.primary_metric(request.val, model)
                record.quality_float = ss.measure.score(model, request.val, record.quality_metric)
                record.quality_quantized = ss.measure.score(out, request.val, record.quality_metric)
            return ss.quantize.QuantResult(out, record)
    # ---------------------------------------------------------------------------------------------

    return Float16Weights


@pytest.fixture
def PerTensorDynamic(monkeypatch):
    """A technique that reuses the module pipeline: only a config and a Scheme."""
    monkeypatch.setattr(_config, "_CONFIGS", dict(_config._CONFIGS))
    monkeypatch.setattr(ss.quantize.REGISTRY, "_handlers", dict(ss.quantize.REGISTRY._handlers))

    @ss.quantize.register_config
    @dataclasses.dataclass(frozen=True)
    class PerTensorDynamic(ss.quantize.QuantConfig):
        """Dynamic int8 with one weight scale per tensor."""

    @ss.quantize.REGISTRY.register(PerTensorDynamic)
    class PerTensorDynamicHandler(ss.quantize.ModuleHandler):
        backends = ("torch",)

        def scheme(self, c):
            return ss.quantize.Scheme(technique="PerTensorDynamic", activations="dynamic", per_channel=False,
                                      skip=c.skip)

    return PerTensorDynamic


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()


def _data(n=120):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    return ss.datasets.from_arrays(X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1))


def test_new_technique_runs_through_ss_quantize_and_leaves_the_input_alone(Float16Weights):
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    q = ss.quantize(model, Float16Weights(min_features=8), val=_data())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    w = q.model[2].weight
    assert torch.equal(w, w.half().float()) and not torch.equal(w, model[2].weight)
    assert torch.equal(q.model[0].weight, model[0].weight)  # in_features=6 < 8: kept float
    assert [(r.layer, r.action, r.after) for r in q.records] == [("0", "float", 32), ("2", "quantized", 16)]
    assert q.record.kept_float == {"0": "in_features=6 < min_features=8"} and q.record.quantized == ["2"]
    assert q.summary["technique"] == "Float16Weights" and q.to_dict()["verb"] == "quantize"
    assert q.record.quality_metric == "accuracy" and abs(q.record.quality_quantized - q.record.quality_float) < 0.02
    m, record = q
    assert m is q.model and record is q.record


def test_new_technique_round_trips_validates_and_runs_as_a_recipe_step(Float16Weights):
    from slimstack.recipe._steps import StepContext, run_step

    cfg = Float16Weights(min_features=4, skip=("2",))
    assert config_from_dict(cfg.to_dict()) == cfg
    assert Float16Weights in ss.quantize.REGISTRY.configs()
    with pytest.raises(ConfigError, match=r"min_features=0 must be a positive integer"):
        Float16Weights(min_features=0)
    with pytest.raises(ConfigError, match=r"Float16Weights.backend='onnxruntime' is not offered.*'torch'"):
        Float16Weights(backend="onnxruntime")  # the handler's declared backends decide
    with pytest.raises(ModelError, match="Float16Weights rounds torch modules"):
        ss.quantize(object(), cfg)
    data = _data()
    ctx = StepContext(original=_mlp(), train=data, val=data, test=data, example_inputs=torch.zeros(1, 6))
    model, record = run_step("quantize", {"method": "Float16Weights", "min_features": 4, "skip": ["2"]}, _mlp(), ctx)
    # every recipe step records the one Result shape: {"verb", "summary", "records", ...}
    assert record["verb"] == "quantize"
    actions = {r["layer"]: (r["action"], r.get("reason", "")) for r in record["records"]}
    assert actions["0"][0] == "quantized" and actions["2"] == ("float", "listed in config.skip")
    assert torch.equal(model[0].weight, model[0].weight.half().float())


def test_a_scheme_only_technique_gets_the_pipeline_fallback_and_records(PerTensorDynamic):
    from slimstack.quantize import QuantLinear

    model, data = _mlp(), _data()
    q = ss.quantize(model, PerTensorDynamic(), val=data, tolerance=0.05)
    assert q.record.backend == "torch" and q.record.notes == ["PerTensorDynamic runs on the torch backend only"]
    assert q.record.tolerance == 0.05 and q.record.quality_metric == "accuracy" and q.record.fallback_met
    assert q.record.quantized == ["0", "2"]  # within tolerance with every layer int8: nothing kept float
    loss = (q.record.quality_float - q.record.quality_quantized) / q.record.quality_float
    assert loss <= 0.05 and q.record.quality_float == ss.measure.score(model, data)
    for name in q.record.quantized:
        layer = q.model.get_submodule(name)
        assert isinstance(layer, QuantLinear) and torch.unique(layer.weight_scale).numel() == 1  # one scale
    assert all(r.after == 8 for r in q.records if r.action == "quantized")


def test_the_registry_is_restored_after_the_new_technique(Float16Weights):
    assert "Float16Weights" in _config.registered_configs("quantize")


def test_only_the_built_in_techniques_remain_outside_the_fixture():
    assert set(_config.registered_configs("quantize")) == {"DynamicInt8", "StaticInt8", "WeightOnly", "QAT"}
