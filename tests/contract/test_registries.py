"""The contract every registered technique keeps (issue #15 item 6), in the spirit of optuna's testing suites.

Parametrized over ``slimstack._config.registered_configs()`` and ``registries()``: each config
round-trips through ``to_dict``/``config_from_dict`` and a YAML recipe, has a handler that applies
to a small model of the kind it declares, leaves the input model unchanged (weights and train
flags), returns a model with the same interface, is deterministic under a seed, records what it did
and is accepted as a recipe step. A config with no entry in :data:`CASES` fails the suite, so a new
technique adds one small fixture here. A config whose handlers split by model kind (distillation
into a causal LM or into any other module) has one case per kind, named ``"Config[kind]"``, each
naming the handler the registry must pick.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import slimstack as ss
from slimstack._config import config_from_dict, registered_configs, registries


@dataclasses.dataclass
class Env:
    train: Any
    val: Any
    test: Any
    mlp: torch.nn.Module
    mlp_tuned: list[torch.nn.Module]
    cnn: torch.nn.Module
    forest: Any
    lm: Any = None  # a tiny random Llama-family CausalLM (tests/llm/conftest.py), for the LM techniques


@pytest.fixture(scope="module")
def env() -> Env:
    train = ss.datasets.load("digits", split="train", seed=0).head(400)
    val = ss.datasets.load("digits", split="val", seed=0).head(200)
    test = ss.datasets.load("digits", split="test", seed=0).head(64)
    mlp = ss.zoo.train(ss.zoo.digits_mlp(seed=0, hidden=(32,)), train, epochs=3, seed=0)
    tuned = [ss.zoo.train(copy.deepcopy(mlp), train.subset(np.arange(i, len(train), 2)), epochs=1, lr=1e-3, seed=i)
             for i in (0, 1)]
    cnn = ss.zoo.train(ss.zoo.digits_cnn(seed=0, channels=(4, 8), hidden=16), train, epochs=1, seed=0)
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=4, max_depth=8, random_state=0).fit(train.flat().X, train.y)
    from slimstack.llm import CausalLM

    from ..llm.conftest import make_hf_model

    hf, tok = make_hf_model("llama", seed=0)
    return Env(train, val, test, mlp, tuned, cnn, forest, CausalLM(hf, tok, name="tiny-llama"))


@dataclasses.dataclass(frozen=True)
class Case:
    """One small valid config, the model(s) it applies to and how the verb is called."""

    config: Callable[[], Any]
    inputs: Callable[[Env], dict[str, Any]]  # {"model": ...} or distill's {"teacher", "student"} or merge's {"models"}
    data: Callable[[Env], dict[str, Any]] = lambda e: {}  # by meaning: train=, val=, calibration=, example_inputs=
    flat: bool = False  # the model takes (n, 64) rows (scikit-learn)
    lm: bool = False  # a causal LM: outputs are next-token log-probabilities of a fixed text
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)  # extra recipe-step keys (merge: models/base)
    handler: str = ""  # the handler class the registry must dispatch to, where a config has several


def _mlp(e: Env) -> dict[str, Any]:
    return {"model": e.mlp}


_SOUP = {"models": {"a": "current", "b": "original"}}
_BASED = {"models": {"a": "current", "b": "current"}, "base": "original"}

_LM_TEXT = ("The quick brown fox jumps over the lazy dog. A language model predicts the next token. "
            "Small models run fast on a CPU, and quantized ones run faster still. ") * 2


def _lm(e: Env) -> dict[str, Any]:
    return {"model": e.lm}


def _lm_calib(e: Env) -> dict[str, Any]:
    return {"calibration": [_LM_TEXT] * 4}


CASES: dict[str, Case] = {
    "WandaPruning": Case(lambda: ss.WandaPruning(sparsity=0.5, calibration_windows=4, calibration_tokens=32), _lm,
                         _lm_calib, lm=True),
    "LayerDrop": Case(lambda: ss.LayerDrop(layers=1, calibration_windows=4, calibration_tokens=32), _lm, _lm_calib,
                      lm=True),
    "WidthPruning": Case(lambda: ss.WidthPruning(ffn_ratio=0.25, calibration_windows=4, calibration_tokens=32), _lm,
                         _lm_calib, lm=True),
    "MagnitudePruning": Case(lambda: ss.MagnitudePruning(sparsity=0.5), _mlp),
    "NMPruning": Case(lambda: ss.NMPruning(n=2, m=4), _mlp),
    "StructuredPruning": Case(lambda: ss.StructuredPruning(ratio=0.5), lambda e: {"model": e.cnn},
                              lambda e: {"example_inputs": torch.as_tensor(e.train.X[:2])}),
    "TreePruning": Case(lambda: ss.TreePruning(n_alphas=5), lambda e: {"model": e.forest},
                        lambda e: {"val": e.val.flat()}, flat=True),
    "DynamicInt8": Case(lambda: ss.DynamicInt8(backend="torch"), _mlp),
    "StaticInt8": Case(lambda: ss.StaticInt8(backend="torch", calibration_size=64), _mlp,
                       lambda e: {"calibration": e.train}),
    "WeightOnly": Case(lambda: ss.WeightOnly(backend="torch", method="rtn", group_size=32), _mlp),
    "QAT": Case(lambda: ss.QAT(epochs=1, seed=0), _mlp, lambda e: {"train": e.train, "calibration": e.train}),
    "DistillConfig": Case(lambda: ss.DistillConfig(epochs=1, lr=1e-3, progress=False, seed=0),
                          lambda e: {"teacher": e.mlp, "student": ss.zoo.digits_mlp(seed=1, hidden=(16,))},
                          lambda e: {"train": e.train, "val": e.val}, handler="ModuleDistillHandler"),
    "DistillConfig[causal LM]": Case(
        lambda: ss.DistillConfig(epochs=1, batch_size=2, lr=1e-3, max_length=32, top_k=16, progress=False, seed=0),
        lambda e: {"teacher": e.lm, "student": ss.zoo.shrink(e.lm, layers=1)},
        lambda e: {"train": [_LM_TEXT[i : i + 80] for i in range(0, 240, 40)]}, lm=True,
        handler="CausalLMDistillHandler"),
    "UniformSoup": Case(lambda: ss.UniformSoup(), lambda e: {"models": e.mlp_tuned}, recipe=_SOUP),
    "GreedySoup": Case(lambda: ss.GreedySoup(), lambda e: {"models": e.mlp_tuned}, lambda e: {"val": e.val},
                       recipe=_SOUP),
    "TaskArithmetic": Case(lambda: ss.TaskArithmetic(scaling=0.5), lambda e: {"models": e.mlp_tuned, "base": e.mlp},
                           recipe=_BASED),
    "TiesMerging": Case(lambda: ss.TiesMerging(density=0.5), lambda e: {"models": e.mlp_tuned, "base": e.mlp},
                        recipe=_BASED),
}

CONFIGS = sorted(registered_configs())
CASE_NAMES = sorted(CASES)


def config_name(case: str) -> str:
    """The registered config a case runs: ``"DistillConfig[causal LM]"`` -> ``"DistillConfig"``."""
    return case.split("[")[0]


def _verb(kind: str) -> Callable[..., Any]:
    return getattr(ss, kind).__verb__ if hasattr(getattr(ss, kind), "__verb__") else getattr(ss, kind)


def apply(name: str, env: Env) -> tuple[Any, dict[str, Any]]:
    """Run the technique once: (result, the inputs it was given)."""
    case, cfg = CASES[name], CASES[name].config()
    inputs, data = case.inputs(env), case.data(env)
    verb = _verb(cfg.kind)
    if cfg.kind == "distill":
        return verb(inputs["teacher"], inputs["student"], cfg, **data), inputs
    if cfg.kind == "merge":
        return verb(inputs["models"], cfg, base=inputs.get("base"), **data), inputs
    return verb(inputs["model"], cfg, **data), inputs


def model_of(result: Any) -> Any:
    return result.model if hasattr(result, "model") and not isinstance(result, torch.nn.Module) else result


def records_of(result: Any) -> list[Any]:
    """The result's per-layer records (a merged model returned bare carries its record as ``merge_record_``)."""
    if isinstance(result, ss._result.Result):
        return result.records
    return list((getattr(result, "merge_record_", None) or {}).items())  # merged model


def outputs(model: Any, env: Env, flat: bool, lm: bool = False) -> np.ndarray:
    if lm:
        return np.asarray(model.logprobs(_LM_TEXT, max_tokens=32)[1])
    if flat:
        return np.asarray(model.predict(env.test.flat().X))
    model_was = [m.training for m in model.modules()] if hasattr(model, "modules") else None
    with torch.no_grad():
        out = model.eval()(torch.as_tensor(env.test.X))
    if model_was is not None:
        for m, was in zip(model.modules(), model_was):
            m.training = was
    return np.asarray(out.detach().float().numpy())


def snapshot(obj: Any) -> Any:
    """Weights and train flags of a torch model (or a list of them); a scikit-learn model's fitted arrays."""
    if isinstance(obj, list):
        return [snapshot(o) for o in obj]
    if isinstance(obj, torch.nn.Module):
        return ({k: v.detach().clone() for k, v in obj.state_dict().items()}, [m.training for m in obj.modules()])
    return [copy.deepcopy(t.tree_.value) for t in obj.estimators_]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and a and isinstance(a[0], tuple):
        return all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, tuple):
        (sa, fa), (sb, fb) = a, b
        return fa == fb and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    return all(np.array_equal(x, y) for x, y in zip(a, b))


_RUNS: dict[str, Any] = {}


def runs(name: str, env: Env) -> dict[str, Any]:
    """Two runs of ``name`` on the same inputs, with snapshots taken before and after (cached per module)."""
    if name not in _RUNS:
        inputs = CASES[name].inputs(env)
        before = {k: snapshot(v) for k, v in inputs.items()}
        first, used = apply(name, env)
        after = {k: snapshot(v) for k, v in used.items() if k in before}
        second, _ = apply(name, env)
        _RUNS[name] = {"before": before, "after": after, "first": first, "second": second}
    return _RUNS[name]


def test_every_registered_config_has_a_fixture():
    covered = {config_name(c) for c in CASES}
    missing = [n for n in CONFIGS if n not in covered]
    assert not missing, f"add a Case for {missing} to tests/contract/test_registries.py (a small config + model)"
    assert covered <= set(CONFIGS), f"fixtures for unregistered configs: {sorted(covered - set(CONFIGS))}"
    for case in CASES:
        assert type(CASES[case].config()).__name__ == config_name(case), case


def test_registries_cover_every_config_kind():
    regs = registries()
    for verb, reg in regs.items():
        assert reg.verb == verb and list(reg.configs()), f"registry {verb!r} has no configs"
    kinds = {registered_configs()[n].kind for n in CONFIGS}
    assert kinds <= set(regs), f"config kinds with no registry: {kinds - set(regs)}"
    for verb in ("prune", "quantize", "distill", "merge"):
        assert verb in regs, f"ss.{verb} has no registry"


def test_every_distill_handler_has_a_case():
    handlers = {type(h).__name__ for h in registries()["distill"].handlers_for(ss.DistillConfig())}
    assert handlers == {CASES[c].handler for c in CASES if config_name(c) == "DistillConfig"}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_round_trips_through_dict_and_yaml(name):
    cfg = CASES[name].config()
    d = cfg.to_dict()
    assert d["type"] == name and config_from_dict(d) == cfg
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(d))) == cfg
    assert type(cfg).from_dict(d) == cfg


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_accepted_as_a_recipe_step(name, tmp_path):
    from slimstack.recipe import load_recipe
    from slimstack.recipe._steps import parse_step

    cfg, case = CASES[name].config(), CASES[name]
    fields = cfg.to_dict()["data"]
    if cfg.kind == "merge":
        method = next(m for m, cls in ss.merge.METHODS.items() if cls is type(cfg))
        step = {"method": method, **case.recipe, "params": fields}
    else:  # a config with its own "method" field (WeightOnly) is named with type:
        step = {("type" if "method" in fields else "method"): name, **fields}
    text = yaml.safe_dump({"name": "contract", "model": {"zoo": "digits_mlp"}, "data": {"name": "digits"},
                           "steps": [{cfg.kind: step}]})
    (tmp_path / "r.yaml").write_text(text)
    recipe = load_recipe(tmp_path / "r.yaml")  # schema validation of the YAML file
    kind, parsed_fields = recipe.step_list()[0]
    parsed, _ = parse_step(kind, parsed_fields)
    assert (parsed["config"] if cfg.kind == "merge" else parsed) == cfg


@pytest.mark.parametrize("name", CASE_NAMES)
def test_a_handler_exists_and_applies_to_its_model(name, env):
    cfg = CASES[name].config()
    regs = registries()
    handlers = regs[cfg.kind].handlers_for(cfg)
    assert handlers, f"no handler for {name}"
    inputs = CASES[name].inputs(env)
    # merge handlers take the list of models they merge; the others one model (or a student)
    model = inputs["models"] if "models" in inputs else inputs.get("model", inputs.get("student"))
    handler = regs[cfg.kind].dispatch(cfg, model)
    assert handler in handlers
    if CASES[name].handler:
        assert type(handler).__name__ == CASES[name].handler


@pytest.mark.parametrize("name", CASE_NAMES)
def test_input_model_is_unchanged(name, env):
    r = runs(name, env)
    for key, before in r["before"].items():
        assert same(before, r["after"][key]), f"{name} changed its input {key!r}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_output_keeps_the_interface(name, env):
    case, r = CASES[name], runs(name, env)
    inputs = case.inputs(env)
    reference = inputs.get("model", inputs.get("teacher", (inputs.get("models") or [None])[0]))
    new = model_of(r["first"])
    assert new is not reference
    got, want = outputs(new, env, case.flat, case.lm), outputs(reference, env, case.flat, case.lm)
    assert got.shape == want.shape and np.isfinite(got.astype(float)).all()
    if case.flat:
        assert set(np.unique(got)) <= set(reference.classes_)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_deterministic_under_a_seed(name, env):
    case, r = CASES[name], runs(name, env)
    a, b = (outputs(model_of(r["first"]), env, case.flat, case.lm),
            outputs(model_of(r["second"]), env, case.flat, case.lm))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_records_are_present(name, env):
    result = runs(name, env)["first"]
    assert records_of(result), f"{name} returned no records"
    d = result.to_dict() if hasattr(result, "to_dict") else None
    if isinstance(result, ss._result.Result):
        assert d["verb"] == CASES[name].config().kind and d["records"]
        assert all(isinstance(r, ss._result.LayerRecord) and r.action and r.layer for r in result.records)
    if CASES[name].config().kind == "distill":  # what was trained, and the verb's extra: the history
        assert {r.action for r in result.records} <= {"trained", "frozen", "dropped"}
        assert "trained" in {r.action for r in result.records}
        assert d["history"] and d["history"][-1]["epoch"] == 1 and d["summary"]["steps"] > 0
