"""Which split each recipe step learns from (QAT never trains on validation rows) and the merge step."""

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.recipe import load_recipe, run_recipe
from slimstack.recipe._steps import StepContext, run_step


def _split(seed=5, n=240, d=6, k=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    parts = np.split(rng.permutation(n), [n // 2, 3 * n // 4])
    return [ss.datasets.from_arrays(X[i], y[i]) for i in parts]


def _mlp(d=6, k=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.ReLU(), torch.nn.Linear(16, k)).eval()


def test_qat_step_trains_on_train_and_never_sees_a_validation_row(monkeypatch):
    from slimstack.quantize import _api

    train, val, test = _split()
    seen = []
    real = _api.train_qat

    def spy(model, data, **kw):
        seen.append(np.asarray(data.X).reshape(len(data.X), -1).copy())
        return real(model, data, **kw)

    monkeypatch.setattr(_api, "train_qat", spy)
    model = ss.zoo.train(_mlp(), train, epochs=5, seed=0)
    ctx = StepContext(original=model, train=train, val=val, test=test, example_inputs=torch.as_tensor(train.X[:1]))
    q, record = run_step("quantize", {"method": "QAT", "epochs": 1, "tolerance": 0.05}, model, ctx)
    assert len(seen) == 1
    trained = {r.tobytes() for r in seen[0]}
    assert not trained & {r.tobytes() for r in np.asarray(val.X)}, "QAT trained on validation rows"
    assert trained == {r.tobytes() for r in np.asarray(train.X)}
    v = record["validation"]
    assert v["metric"] == "accuracy" and 0.0 <= v["after"] <= 1.0 and v["tolerance"] == 0.05
    assert v["met_tolerance"] == (v["relative_loss"] <= 0.05)
    assert isinstance(q, torch.nn.Module)


@pytest.fixture(scope="module")
def soup_models(tmp_path_factory):
    """A base and two fine-tuned copies, saved as folders beside a recipe."""
    import copy

    folder = tmp_path_factory.mktemp("merge")
    train, val, test = _split(seed=11)
    base = ss.zoo.train(_mlp(seed=1), train, epochs=4, seed=0)
    tuned = [ss.zoo.train(copy.deepcopy(base), train.subset(np.arange(i, len(train), 2)), epochs=6, seed=i)
             for i in (0, 1)]
    ss.save(base, folder / "models" / "base")
    for i, m in enumerate(tuned):
        ss.save(m, folder / "models" / f"ft{i}")
    return folder, base, tuned, (train, val, test)


@pytest.mark.parametrize("method, params, extra", [
    ("uniform", {}, ""),
    ("greedy_soup", {}, ""),
    ("task_arithmetic", {"scaling": 0.5}, "base: original\n"),
    ("ties", {"density": 0.5}, "base: {path: models/base}\n"),
])
def test_merge_step_merges_the_models_named_in_the_recipe(soup_models, monkeypatch, method, params, extra):
    folder, base, tuned, (train, val, test) = soup_models
    text = (f"name: soup\nmodel: {{path: models/base}}\ndata: {{name: iris}}\nsteps:\n  - merge:\n"
            f"      method: {method}\n      models: {{a: {{path: models/ft0}}, b: {{path: models/ft1}}}}\n"
            + "".join(f"      {line}" for line in extra.splitlines(True)) + f"      params: {params}\n")
    (folder / f"{method}.yaml").write_text(text)
    recipe = load_recipe(folder / f"{method}.yaml")  # paths are taken from the recipe's folder
    import importlib

    merge_pkg = importlib.import_module("slimstack.merge")
    calls = []
    real = merge_pkg.merge

    def spy(models, config, **kw):
        calls.append(kw)
        return real(models, config, **kw)

    monkeypatch.setattr(merge_pkg, "merge", spy)
    ctx = StepContext(original=base, train=train, val=val, test=test, example_inputs=None)
    kind, fields = recipe.step_list()[0]
    merged, record = run_step(kind, fields, tuned[0], ctx)
    assert calls and calls[0]["val"] is val  # chooses (soup order, scaling) on the validation split only
    expected = real(tuned, method, base=base if extra else None, val=val, **params)
    for p, q in zip(merged.parameters(), expected.parameters()):
        assert torch.allclose(p, q)
    assert record["method"] == method and set(record["models"]) == {"a", "b"}
    for m, orig in zip(tuned, [ss.load(folder / "models" / "ft0"), ss.load(folder / "models" / "ft1")]):
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), orig.parameters()))  # inputs unchanged


def test_uniform_merge_of_two_models_averages_their_weights(soup_models):
    folder, base, tuned, (train, val, test) = soup_models
    ctx = StepContext(original=base, train=train, val=val, test=test, example_inputs=None)
    merged, _ = run_step("merge", {"method": "uniform", "models": {"a": "current", "b": {"path": str(folder / "models" / "ft1")}}},
                         tuned[0], ctx)
    for p, a, b in zip(merged.parameters(), tuned[0].parameters(), tuned[1].parameters()):
        assert torch.allclose(p, (a + b) / 2)


def test_a_recipe_with_a_merge_step_runs_end_to_end(tmp_path):
    import copy

    digits = {s: ss.datasets.load("digits", split=s, seed=0) for s in ("train", "val")}
    base = ss.zoo.train(ss.zoo.digits_mlp(seed=0), digits["train"], epochs=2, seed=0)
    ss.save(base, tmp_path / "base")
    ss.save(ss.zoo.train(copy.deepcopy(base), digits["train"], epochs=1, lr=1e-3, seed=1), tmp_path / "ft")
    (tmp_path / "r.yaml").write_text(
        "name: soup\nmodel: {path: base}\ndata: {name: digits, limit: 100}\nmeasure: {runs: 1, warmup: 0}\n"
        "steps:\n  - merge: {method: greedy_soup, models: {here: current, ft: {path: ft}}}\n")
    report = run_recipe(tmp_path / "r.yaml", tmp_path / "out")
    assert [r["name"] for r in report["rows"]] == ["original", "01-merge"]
    assert report["steps"][0]["record"]["merge"]["method"] == "GreedySoup"
    assert report["rows"][1]["quality"] >= report["rows"][0]["quality"] - 0.02
    assert (tmp_path / "out" / "artifacts" / "01-merge").is_dir()


@pytest.mark.parametrize("fields, match", [
    ({"method": "uniform", "models": {"a": "current"}}, r"needs at least two models"),
    ({"method": "uniform"}, r"missing key 'models'"),
    ({"method": "ties", "models": {"a": "current", "b": "original"}}, r"add `base: original`"),
    ({"method": "greedy_soup", "models": {"a": "current", "b": "original"}, "base": "original"},
     r"does not use base"),
    ({"method": "uniform", "models": {"a": "current", "b": {"path": "no/such/folder"}}},
     r"models.b: path 'no/such/folder' does not exist"),
    ({"method": "uniform", "models": {"a": "current", "b": {"pth": "x"}}}, r"must be 'current', 'original' or"),
    ({"method": "uniform", "models": {"a": "current", "b": "original"}, "modles": {}}, r"unknown key 'modles'"),
    ({"method": "ties", "models": {"a": "current"}, "base": "original", "params": {"density": 0}},
     r"density=0 must be in \(0, 1\]"),
    ({"method": "sopu", "models": {"a": "current", "b": "original"}}, r"unknown method 'sopu'"),
])
def test_bad_merge_steps_fail_validation_with_the_fix(fields, match):
    recipe = {"name": "m", "model": {"zoo": "digits_mlp"}, "data": {"name": "digits"}, "steps": [{"merge": fields}]}
    with pytest.raises(ss.SlimstackError, match=match):
        load_recipe(recipe)
