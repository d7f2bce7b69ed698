import pytest

import slimstack as ss
from slimstack.recipe import load_recipe, validate_recipe

GOOD = """\
name: t
model:
  estimator: LogisticRegression
  params: {max_iter: 500}
data:
  name: iris
steps:
  - ensemble:
      method: VotingEnsemble
      members:
        lr: current
        nb: {estimator: GaussianNB}
"""


def test_a_good_recipe_validates():
    r = load_recipe(GOOD)
    assert r.name == "t" and r.tolerance == 0.01 and r.objective == "latency"
    assert r.step_list()[0][0] == "ensemble"


@pytest.mark.parametrize(
    "change, match",
    [
        (("name: t", "nmae: t"), r"line 1: unknown key 'nmae'; allowed here: .*Did you mean 'name'"),
        (("  name: iris", "  name: iris\n  seeed: 1"), r"line 7: unknown key 'data.seeed'.*Did you mean 'seed'"),
        (("  - ensemble:", "  - ensembel:"), r"line 8: steps\[0\]: unknown step 'ensembel'.*Did you mean 'ensemble'"),
        (("VotingEnsemble", "VotingEnsembel"), r"line 8: steps\[0\].ensemble: unknown method 'VotingEnsembel'.*Did you mean 'VotingEnsemble'"),
        (("GaussianNB", "GausianNB"), r"unknown estimator 'GausianNB'.*Did you mean 'GaussianNB'"),
        (("name: t", "name: t\ntolerance: 1.5"), r"tolerance: Input should be less than 1 \(got 1.5\)"),
        (("name: t", "name: t\nobjective: speed"), r"objective: Input should be 'latency', 'size' or 'throughput'"),
        (("  estimator: LogisticRegression", "  estimator: LogisticRegression\n  zoo: digits_cnn"), r"exactly one of 'zoo'"),
        (("data:\n  name: iris\n", ""), r"missing key 'data'"),
        (("name: t", "name: [t"), r"not valid YAML"),
    ],
)
def test_bad_recipes_name_the_key_line_and_fix(change, match):
    text = GOOD.replace(*change)
    with pytest.raises(ss.ConfigError, match=match):
        load_recipe(text)


def test_missing_file():
    with pytest.raises(ss.ConfigError, match="does not exist"):
        load_recipe("nope.yaml")


@pytest.mark.parametrize(
    "change, match",
    [
        (("  name: iris", "  nmae: iris"), r"line 6: unknown key 'data.nmae'; allowed here: .*Did you mean 'name'"),
        (("data:\n  name: iris\n", "data: {nmae: stsb, seed: 1}\n"),
         r"line 5: unknown key 'data.nmae'; allowed here: .*Did you mean 'name'"),
        (("  name: iris", "  name: iris\n  tagret: y"), r"line 7: unknown key 'data.tagret'.*Did you mean 'target'"),
        (("  estimator: LogisticRegression", "  estimater: LogisticRegression"),
         r"line 3: unknown key 'model.estimater'.*Did you mean 'estimator'"),
        (("name: t", "name: t\nmeasure: {runs: 3, warmpu: 1}"), r"line 2: unknown key 'measure.warmpu'.*'warmup'"),
    ],
)
def test_a_nested_typo_is_reported_as_the_unknown_key_at_its_line(change, match):
    with pytest.raises(ss.ConfigError, match=match) as exc:
        load_recipe(GOOD.replace(*change))
    assert "missing key" not in str(exc.value)


def _with_step(step):
    return {"name": "t", "model": {"estimator": "LogisticRegression"}, "data": {"name": "iris"}, "steps": [step]}


NAN = float("nan")


@pytest.mark.parametrize(
    "step, match",
    [
        ({"quantize": {"method": "DynamicInt8", "tolerance": NAN}}, r"tolerance=nan must be .* in \(0, 1\)"),
        ({"quantize": {"method": "DynamicInt8", "tolerance": 0}}, r"tolerance=0 must be .* in \(0, 1\)"),
        ({"quantize": {"method": "StaticInt8", "tolerance": 1.0}}, r"tolerance=1.0 must be"),
        ({"quantize": {"method": "DynamicInt8", "tolerance": "low"}}, r"tolerance='low' must be"),
        ({"cascade": {"stages": {"nb": {"estimator": "GaussianNB"}, "m": "current"},
                      "params": {"max_accuracy_drop": NAN}}}, r"max_accuracy_drop=nan is outside \[0, 1\]"),
        ({"cascade": {"stages": {"nb": {"estimator": "GaussianNB"}, "m": "current"},
                      "params": {"max_accuracy_drop": -0.01}}}, r"max_accuracy_drop=-0.01 is outside \[0, 1\]"),
        ({"cascade": {"stages": {"nb": {"estimator": "GaussianNB"}, "m": "current"},
                      "params": {"max_acuracy_drop": 0.01}}}, r"Cascade does not take these"),
        ({"ensemble": {"members": {"m": "current", "nb": {"estimator": "GaussianNB"}},
                       "params": {"weights": [NAN, 1.0]}}}, r"weights=\[nan, 1.0\] has negative or non-finite"),
        ({"ensemble": {"members": {"m": "current", "nb": {"estimator": "GaussianNB"}},
                       "params": {"weights": [1.0, 2.0, 3.0]}}}, r"weights has 3 values but there are 2 members"),
        ({"distill": {"teacher": "biggest"}}, r"teacher='biggest' is not allowed; use 'original' or 'current'"),
        ({"distill": {"student": {"shrnk": {"layers": 2}}}}, r"student must be 'current' or \{shrink"),
    ],
)
def test_validate_rejects_what_run_would_reject(step, match):
    with pytest.raises(ss.ConfigError, match=match):
        validate_recipe(_with_step(step))


@pytest.mark.parametrize("change, match", [
    ({"model": {"path": "/no/such/model"}}, r"model.path '/no/such/model' does not exist"),
    ({"data": {"name": "no_such.csv", "target": "y"}}, r"data.name 'no_such.csv' is neither a built-in"),
    ({"data": {"name": "irsi"}}, r"data.name 'irsi' is neither a built-in.*Did you mean 'iris'"),
])
def test_validate_checks_the_files_run_would_open(change, match):
    recipe = {**_with_step({"quantize": {"method": "DynamicInt8"}}), **change}
    with pytest.raises(ss.ConfigError, match=match):
        validate_recipe(recipe)


def test_validate_still_passes_good_values():
    ok = _with_step({"cascade": {"stages": {"nb": {"estimator": "GaussianNB"}, "m": "current"},
                                 "params": {"max_accuracy_drop": 0.0}}})
    assert validate_recipe(ok).steps[0]["cascade"]["params"]["max_accuracy_drop"] == 0.0
    assert validate_recipe(_with_step({"quantize": {"method": "DynamicInt8", "tolerance": 0.02}}))


def test_relative_paths_resolve_from_the_recipe_folder(tmp_path, monkeypatch):
    import numpy as np

    rng = np.random.default_rng(3)
    folder = tmp_path / "project" / "recipes"
    (folder / "data").mkdir(parents=True)
    X = rng.normal(size=(60, 3))
    rows = ["a,b,c,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{int(a > 0)}" for a, b, c in X]
    (folder / "data" / "points.csv").write_text("\n".join(rows) + "\n")
    (folder / "r.yaml").write_text("name: rel\nmodel: {path: models/m.onnx}\ndata: {name: data/points.csv, target: label}\n"
                                   "steps:\n  - quantize: {method: DynamicInt8}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = load_recipe(folder / "r.yaml")
    assert r.model.path == str(folder / "models" / "m.onnx")
    assert r.data.name == str(folder / "data" / "points.csv")
    from slimstack.recipe._runner import load_data

    assert len(load_data(r)["train"]) > 20  # read from the recipe's folder, not the cwd
    absolute = str(tmp_path / "abs.onnx")
    (folder / "r2.yaml").write_text(f"name: rel\nmodel: {{path: {absolute}}}\ndata: {{name: iris}}\n")
    r2 = load_recipe(str(folder / "r2.yaml"))
    assert r2.model.path == absolute and r2.data.name == "iris"
