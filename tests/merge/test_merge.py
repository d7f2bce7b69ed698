"""ss.merge: the pure rules, torch and sklearn adapters, BatchNorm handling, quality and bad input."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

import slimstack as ss
from slimstack._config import config_from_dict
from slimstack.errors import ConfigError, DataError, ModelError, ShapeError, UnknownNameError
from slimstack.merge import GreedySoup, TaskArithmetic, TiesMerging, UniformSoup
from slimstack.merge._methods import greedy_soup, task_arithmetic, ties_merge, trim_top_k, uniform_soup


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _mlps(n=3, seed=0):
    torch.manual_seed(seed)
    base = ss.zoo.digits_mlp(hidden=(16,))
    models = []
    for i in range(n):
        m = copy.deepcopy(base)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
        models.append(m)
    return base, models


# -- pure rules ----------------------------------------------------------------------------------
def test_uniform_soup_is_elementwise_mean():
    s = uniform_soup([{"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, 6.0])}, {"w": np.array([2.0, 1.0])}])
    np.testing.assert_allclose(s["w"], [2.0, 3.0])


def test_task_arithmetic_formula():
    base = {"w": np.array([1.0, 1.0])}
    out = task_arithmetic(base, [{"w": np.array([2.0, 1.0])}, {"w": np.array([1.0, 3.0])}], scaling=0.5)
    np.testing.assert_allclose(out["w"], [1.5, 2.0])


def test_trim_keeps_global_top_k():
    tau = {"a": np.array([0.1, -5.0, 0.2]), "b": np.array([[3.0, -0.05], [0.3, -4.0]])}
    kept = trim_top_k(tau, density=3 / 7)
    assert sum(np.count_nonzero(v) for v in kept.values()) == 3
    np.testing.assert_allclose(kept["a"], [0.0, -5.0, 0.0])
    np.testing.assert_allclose(kept["b"], [[3.0, 0.0], [0.0, -4.0]])
    assert tau["a"][0] == 0.1  # input untouched


def test_ties_trim_elect_disjoint_mean():
    base = {"w": np.zeros(4)}
    a = {"w": np.array([1.0, -3.0, 0.01, 2.0])}
    b = {"w": np.array([3.0, 1.0, 0.02, -1.0])}
    c = {"w": np.array([-1.0, -1.0, 0.0, 4.0])}
    merged, info = ties_merge(base, [a, b, c], density=1.0, scaling=1.0)
    # entry 0: sum +3 -> mean of (1, 3); entry 1: sum -3 -> mean of (-3, -1);
    # entry 2: all positive -> mean of the two nonzero; entry 3: sum +5 -> mean of (2, 4)
    np.testing.assert_allclose(merged["w"], [2.0, -2.0, 0.015, 3.0])
    assert info["sign_conflicts"] == 3
    trimmed, _ = ties_merge(base, [a, b, c], density=0.5, scaling=2.0)
    # a keeps (-3, 2); b keeps (3, 1); c keeps (-1, 4) and one -1 (tie at the cut, first kept)
    assert trimmed["w"][2] == 0.0  # the small entries are trimmed away


def test_greedy_soup_ranks_by_own_score_and_needs_strict_improvement():
    target = np.array([1.0, 1.0])
    states = [{"w": np.array([0.0, 2.0])}, {"w": np.array([1.2, 0.8])}, {"w": np.array([2.0, 0.0])},
              {"w": np.array([5.0, 5.0])}]
    soup, info = greedy_soup(states, lambda s: -float(np.abs(s["w"] - target).sum()))
    assert info["order"][0] == 1  # best individual first
    assert 3 not in info["kept"]  # the outlier would hurt
    assert info["soup_score"] >= max(info["individual_scores"])
    np.testing.assert_allclose(soup["w"], np.mean([states[i]["w"] for i in info["kept"]], axis=0))
    # a duplicate of the soup does not change its score: not a strict improvement, not kept
    _, dup = greedy_soup([states[1], states[1]], lambda s: -float(np.abs(s["w"] - target).sum()))
    assert dup["kept"] == [0]


# -- torch -----------------------------------------------------------------------------------------
def test_torch_uniform_soup_and_inputs_unchanged():
    _, models = _mlps()
    before = [_state(m) for m in models]
    soup = ss.merge(models, "uniform")
    assert type(soup) is type(models[0]) and soup is not models[0]
    for name, p in soup.state_dict().items():
        expected = torch.stack([m.state_dict()[name] for m in models]).mean(0)
        torch.testing.assert_close(p, expected)
    for m, s in zip(models, before):
        for k, v in m.state_dict().items():
            assert torch.equal(v, s[k])
    assert soup.merge_record_["method"] == "UniformSoup"


def test_torch_task_arithmetic_and_ties():
    base, models = _mlps()
    ta = ss.merge(models, "task_arithmetic", base=base, scaling=0.4)
    w = "net.1.weight"
    expected = base.state_dict()[w] + 0.4 * sum(m.state_dict()[w] - base.state_dict()[w] for m in models)
    torch.testing.assert_close(ta.state_dict()[w], expected)
    # scaling 1/n without data: the uniform soup of the fine-tuned models
    avg = ss.merge(models, "task_arithmetic", base=base)
    torch.testing.assert_close(avg.state_dict()[w], ss.merge(models).state_dict()[w])
    ties = ss.merge(models, ss.TiesMerging(density=0.2), base=base)
    delta = ties.state_dict()[w] - base.state_dict()[w]
    assert 0 < (delta != 0).float().mean() < 0.6  # trimming leaves most entries at the base
    info = ties.merge_record_["ties"]
    n_entries = info["entries"]
    assert all(abs(k - 0.2 * n_entries) <= 1 for k in info["kept_per_task"])


def test_batchnorm_buffers_averaged_or_recalibrated():
    torch.manual_seed(0)
    a, b = ss.zoo.digits_cnn(channels=(4, 8), hidden=16), ss.zoo.digits_cnn(channels=(4, 8), hidden=16)
    X = np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)
    y = np.arange(64) % 10
    for m in (a, b):  # give each model its own running statistics
        m.train()
        with torch.no_grad():
            m(torch.as_tensor(X) * (2.0 if m is b else 1.0))
        m.eval()
    soup = ss.merge([a, b])
    rm = "features.1.running_mean"
    torch.testing.assert_close(soup.state_dict()[rm], (a.state_dict()[rm] + b.state_dict()[rm]) / 2)
    assert soup.state_dict()["features.1.num_batches_tracked"] == a.state_dict()["features.1.num_batches_tracked"]
    assert "fixed_from_template" in soup.merge_record_

    recal = ss.merge([a, b], "uniform", batchnorm="recalibrate", data=(X, y))
    with torch.no_grad():
        conv_out = recal.features[0](torch.as_tensor(X))
    torch.testing.assert_close(recal.state_dict()[rm], conv_out.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    assert "recomputed" in recal.merge_record_["batchnorm"]
    assert not recal.training


@pytest.fixture(scope="module")
def finetuned():
    """Five digits MLPs fine-tuned from one start with different seeds and learning rates."""
    train = ss.datasets.load("digits", split="train", seed=0)
    val = ss.datasets.load("digits", split="val", seed=0)
    test = ss.datasets.load("digits", split="test", seed=0)
    start = ss.zoo.train(ss.zoo.digits_mlp(hidden=(32,)), train, epochs=3, seed=0)
    members = [ss.zoo.train(copy.deepcopy(start), train, epochs=3, lr=lr, seed=s)
               for s, lr in enumerate([1e-3, 2e-3, 3e-3])]
    return start, members, val, test


def _acc(model, ds):
    with torch.no_grad():
        return float((model(torch.as_tensor(ds.X)).argmax(1).numpy() == ds.y).mean())


def test_soups_of_finetuned_models_keep_quality(finetuned):
    start, members, val, test = finetuned
    accs = [_acc(m, test) for m in members]
    uniform = ss.merge(members, "uniform")
    assert _acc(uniform, test) >= min(accs) - 0.02
    greedy = ss.merge(members, "greedy_soup", data=val)
    info = greedy.merge_record_["greedy_soup"]
    assert info["individual_scores"] == pytest.approx([_acc(m, val) for m in members])
    assert _acc(greedy, val) == pytest.approx(info["soup_score"])
    assert info["soup_score"] >= max(info["individual_scores"])
    tuned = ss.merge(members, "task_arithmetic", base=start, data=val)
    assert tuned.merge_record_["scaling_chosen"] == "best on data"
    assert _acc(tuned, val) == pytest.approx(max(tuned.merge_record_["scaling_scores"].values()))



def test_val_is_the_validation_keyword_and_data_its_older_name(finetuned):
    start, members, val, test = finetuned
    by_val = ss.merge(members, "greedy_soup", val=val)
    by_data = ss.merge(members, "greedy_soup", data=val)
    assert by_val.merge_record_["greedy_soup"] == by_data.merge_record_["greedy_soup"]
    assert all(torch.equal(p, q) for p, q in zip(by_val.parameters(), by_data.parameters()))
    with pytest.raises(ss.ConfigError, match="both val= and data=.*pass only val="):
        ss.merge(members, "greedy_soup", val=val, data=val)

# -- sklearn MLPs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sk_mlps():
    ds = ss.datasets.load("digits", split="train", seed=0).flat()
    val = ss.datasets.load("digits", split="val", seed=0).flat()
    start = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start.fit(ds.X, ds.y)
        members = []
        for seed in range(3):
            m = copy.deepcopy(start).set_params(max_iter=10, warm_start=True, random_state=seed,
                                                learning_rate_init=1e-3 * (seed + 1))
            members.append(m.fit(ds.X, ds.y))
    return start, members, val


def test_sklearn_mlp_merges(sk_mlps):
    start, members, val = sk_mlps
    before = [[c.copy() for c in m.coefs_] for m in members]
    soup = ss.merge(members, "uniform")
    assert isinstance(soup, MLPClassifier)
    assert soup.coefs_[0].dtype == members[0].coefs_[0].dtype  # float32 data gives float32 weights
    np.testing.assert_allclose(soup.coefs_[0], np.mean([m.coefs_[0] for m in members], axis=0), rtol=1e-6)
    np.testing.assert_allclose(soup.intercepts_[1], np.mean([m.intercepts_[1] for m in members], axis=0),
                               rtol=1e-6)
    for m, b in zip(members, before):
        np.testing.assert_array_equal(m.coefs_[0], b[0])
    assert soup.score(val.X, val.y) >= min(m.score(val.X, val.y) for m in members) - 0.02 > 0.8
    greedy = ss.merge(members, "greedy_soup", data=val)
    assert greedy.score(val.X, val.y) == pytest.approx(greedy.merge_record_["greedy_soup"]["soup_score"])
    ties = ss.merge(members, "ties", base=start, density=0.5)
    assert isinstance(ties, MLPClassifier) and ties.predict(val.X[:3]).shape == (3,)


def test_sklearn_regressor_merges():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 3)), rng.normal(size=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        regs = [MLPRegressor(hidden_layer_sizes=(4,), max_iter=20, random_state=s).fit(X, y) for s in range(2)]
    soup = ss.merge(regs)
    assert isinstance(soup, MLPRegressor)
    np.testing.assert_allclose(soup.coefs_[1], (regs[0].coefs_[1] + regs[1].coefs_[1]) / 2)


# -- configs and bad input ----------------------------------------------------------------------
@pytest.mark.parametrize("config", [UniformSoup(), GreedySoup(batchnorm="recalibrate"),
                                    TaskArithmetic(scaling=0.3), TiesMerging(density=0.3, scaling=0.8)])
def test_config_round_trip(config):
    assert config_from_dict(config.to_dict()) == config


def test_mismatched_shapes_report_first_difference():
    a, b = ss.zoo.digits_mlp(hidden=(16,)), ss.zoo.digits_mlp(hidden=(32,))
    with pytest.raises(ShapeError, match=r"'net.1.weight' has shape \(32, 64\) in model 1 but \(16, 64\) in model 0"):
        ss.merge([a, b])


def test_mismatched_names_and_types():
    a, b = ss.zoo.digits_mlp(hidden=(16,)), ss.zoo.digits_mlp(hidden=(16, 16))
    with pytest.raises(ModelError, match="model 1 has a parameter 'net.5.weight' that model 0 lacks"):
        ss.merge([a, b])
    with pytest.raises(ModelError, match="model 1 has no parameter 'net.5.weight', which model 0 has"):
        ss.merge([b, a])  # the reference is always the first model
    with pytest.raises(ModelError, match="model 1 is a DigitsCNN but model 0 is a DigitsMLP"):
        ss.merge([a, ss.zoo.digits_cnn()])


def test_sklearn_mismatches(sk_mlps):
    _, members, val = sk_mlps
    other = copy.deepcopy(members[0])
    other.classes_ = np.arange(1, 11)
    with pytest.raises(ModelError, match="model 1 predicts classes"):
        ss.merge([members[0], other])
    with pytest.raises(ModelError, match="not fitted"):
        ss.merge([members[0], MLPClassifier()])


@pytest.mark.parametrize("call, error, match", [
    (lambda ms, b: ss.merge(ms, "median"), UnknownNameError, "unknown merge method 'median'"),
    (lambda ms, b: ss.merge(ms, "ties"), ConfigError, "TiesMerging needs base="),
    (lambda ms, b: ss.merge(ms, "uniform", base=b), ConfigError, "does not use base="),
    (lambda ms, b: ss.merge(ms, "greedy_soup"), DataError, "pass data="),
    (lambda ms, b: ss.merge(ms, "ties", base=b, density=0.0), ConfigError, r"density=0.0 must be in \(0, 1\]"),
    (lambda ms, b: ss.merge(ms, TiesMerging(), base=b, density=0.3), ConfigError, "inside the config"),
    (lambda ms, b: ss.merge(ms, "uniform", batchnorm="freeze"), ConfigError, "batchnorm='freeze'"),
    (lambda ms, b: ss.merge(ms, "uniform", batchnorm="recalibrate"), DataError, "recomputes BatchNorm"),
    (lambda ms, b: ss.merge([], "uniform"), ConfigError, "non-empty list"),
    (lambda ms, b: ss.merge([object()], "uniform"), ModelError, "ss.merge takes torch.nn.Module"),
])
def test_bad_input(call, error, match):
    base, models = _mlps(2)
    with pytest.raises(error, match=match):
        call(models, base)
