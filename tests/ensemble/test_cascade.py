"""Cascade: estimator contract, threshold semantics, goals, curve and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

import slimstack as ss
from slimstack.ensemble import Cascade
from slimstack.ensemble._cascade import confidence_scores
from slimstack.errors import ConfigError, DataError, ModelError


def _small_cascade(**kw):
    return Cascade([("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=4, random_state=0))],
                   costs=[1.0, 5.0], n_thresholds=10, **kw)


@parametrize_with_checks([_small_cascade()])
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def prefit_stages(digits):
    X_tr, X_te, y_tr, y_te = digits
    X_fit, X_val, y_fit, y_val = train_test_split(X_tr, y_tr, test_size=0.3, random_state=0, stratify=y_tr)
    nb = LogisticRegression(max_iter=300).fit(X_fit, y_fit)  # the cheap stage
    knn = KNeighborsClassifier(n_neighbors=5).fit(X_fit, y_fit)
    return nb, knn, X_val, y_val


def test_public_name():
    assert ss.Cascade is Cascade


@pytest.mark.parametrize("measure", ["max_prob", "margin", "entropy"])
def test_confidence_in_unit_interval_and_ordered(measure):
    p = np.array([[1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    c = confidence_scores(p, measure)
    assert np.all((c >= 0) & (c <= 1))
    assert c[0] == pytest.approx(1.0) and c[0] > c[1] > c[2]
    expected_last = {"max_prob": 1 / 3, "margin": 0.0, "entropy": 0.0}[measure]
    assert c[2] == pytest.approx(expected_last, abs=1e-9)


def test_prefit_tuning_meets_goal_and_saves_cost(prefit_stages, digits):
    nb, knn, X_val, y_val = prefit_stages
    cascade = Cascade([("nb", nb), ("knn", knn)], prefit=True, costs=[1.0, 10.0], max_accuracy_drop=0.01)
    cascade.fit(X_val, y_val)
    assert cascade.stages_[0][1] is nb  # prefit stages are used as given
    knn_acc = float((knn.predict(X_val) == y_val).mean())
    assert cascade.reference_accuracy_ == pytest.approx(knn_acc)
    assert cascade.validation_accuracy_ >= knn_acc - 0.01 - 1e-9
    # the chosen point must be the cheapest whose 95% upper bound on the drop meets the goal
    curve = cascade.curve_
    ok = curve["drop_bound"] <= 0.01 + 1e-12
    assert cascade.drop_bound_ <= 0.01 and cascade.confidence_ == 0.95
    assert cascade.expected_drop_ == pytest.approx(knn_acc - cascade.validation_accuracy_)
    assert cascade.record_["drop_bound"] == cascade.drop_bound_ and cascade.record_["rows"] == len(y_val)
    assert cascade.mean_cost_ == pytest.approx(curve["cost"][ok].min())
    assert cascade.stage_share_["nb"] > 0.3
    assert sum(cascade.stage_share_.values()) == pytest.approx(1.0)
    # mean cost = cost(nb) on all + cost(knn) on the deferred share
    assert cascade.mean_cost_ == pytest.approx(1.0 + 10.0 * cascade.stage_share_["knn"])
    # validation accuracy reproduces through predict on the same data
    assert cascade.score(X_val, y_val) == pytest.approx(cascade.validation_accuracy_)
    shares = np.bincount(cascade.answered_by(X_val), minlength=2) / len(y_val)
    assert shares[0] == pytest.approx(cascade.stage_share_["nb"])


def test_safety_margin_trades_cost_for_a_goal_that_holds(prefit_stages):
    """safety=0 tunes to the point estimate; the default keeps one paired standard error in hand."""
    nb, knn, X_val, y_val = prefit_stages
    kw = {"prefit": True, "costs": [1.0, 10.0], "max_accuracy_drop": 0.005, "risk": None}
    plain = Cascade([("nb", nb), ("knn", knn)], safety=0.0, **kw).fit(X_val, y_val)
    safe = Cascade([("nb", nb), ("knn", knn)], **kw).fit(X_val, y_val)
    assert safe.safety == 1.0 and safe.thresholds_[0] >= plain.thresholds_[0]
    assert safe.mean_cost_ >= plain.mean_cost_
    i = int(np.flatnonzero(safe.curve_["thresholds"][:, 0] == safe.thresholds_[0])[0])
    assert safe.curve_["accuracy"][i] - safe.curve_["drop_se"][i] >= safe.reference_accuracy_ - 0.005 - 1e-9
    # the standard error is that of the paired row-by-row difference against the last stage
    conf = nb.predict_proba(X_val).max(axis=1)
    answer_first = conf > safe.thresholds_[0]
    right = np.where(answer_first, nb.predict(X_val) == y_val, knn.predict(X_val) == y_val)
    d = right.astype(float) - (knn.predict(X_val) == y_val)
    assert safe.curve_["drop_se"][i] == pytest.approx(np.std(d, ddof=1) / np.sqrt(len(d)))
    with pytest.raises(ConfigError, match="safety=-1"):
        Cascade([("nb", nb), ("knn", knn)], safety=-1, **kw).fit(X_val, y_val)


def test_cost_model_charges_call_overhead_once_per_batch():
    from slimstack.ensemble._cascade import _evaluate_grid

    conf = np.array([[0.9, 0.9, 0.9, 0.1]])  # at threshold 0.5 the first stage answers 3 of 4 rows
    correct = np.ones((2, 4), dtype=bool)
    grid = [np.array([0.5])]
    plain = _evaluate_grid(conf, correct, np.array([1.0, 10.0]), grid)
    assert plain["cost"][0] == pytest.approx(1.0 + 10.0 * 0.25)
    # stage 2 costs 10 per row at batch 4, of which 8 per call (2 per row amortised) is overhead
    batched = _evaluate_grid(conf, correct, np.array([1.0, 10.0]), grid, overhead=np.array([0.0, 8.0]), batch=4)
    p_call = 1 - 0.75 ** 4  # a batch of 4 rows holds a deferred row with this probability
    assert batched["cost"][0] == pytest.approx(1.0 + 8.0 * 0.25 + 8.0 * p_call / 4)
    assert batched["cost"][0] > plain["cost"][0]


def test_measured_costs_split_overhead(prefit_stages):
    nb, knn, X_val, y_val = prefit_stages
    cascade = Cascade([("lr", nb), ("knn", knn)], prefit=True, cost_repeats=2).fit(X_val, y_val)
    assert cascade.call_overhead_.shape == (2,) and np.all(cascade.call_overhead_ >= 0)
    assert np.all(cascade.call_overhead_ <= cascade.costs_ * min(256, len(y_val)) + 1e-12)


def test_curve_is_complete_and_pareto_monotone(prefit_stages):
    nb, knn, X_val, y_val = prefit_stages
    cascade = Cascade([("nb", nb), ("knn", knn)], prefit=True, costs=[1.0, 10.0]).fit(X_val, y_val)
    curve = cascade.curve_
    m = len(curve["accuracy"])
    assert curve["thresholds"].shape == (m, 1) and curve["stage_share"].shape == (m, 2)
    assert m > 20
    # threshold 1.0 defers everything: cost of both stages, accuracy of the last stage
    never = np.flatnonzero(curve["thresholds"][:, 0] == 1.0)[0]
    assert curve["cost"][never] == pytest.approx(11.0)
    assert curve["accuracy"][never] == pytest.approx(cascade.reference_accuracy_)
    front = np.argsort(curve["cost"][curve["pareto"]])
    assert np.all(np.diff(curve["accuracy"][curve["pareto"]][front]) > 0)


def test_cost_budget_goal(prefit_stages):
    nb, knn, X_val, y_val = prefit_stages
    cascade = Cascade([("nb", nb), ("knn", knn)], prefit=True, costs=[1.0, 10.0], cost_budget=4.0).fit(X_val, y_val)
    assert cascade.mean_cost_ <= 4.0
    within = cascade.curve_["cost"] <= 4.0
    assert cascade.validation_accuracy_ == pytest.approx(cascade.curve_["accuracy"][within].max())
    with pytest.warns(UserWarning, match="cost_budget"):  # clone would unfit prefit stages
        tight = cascade.set_params(cost_budget=0.5).fit(X_val, y_val)
    assert not tight.goal_met_


def test_given_thresholds_are_used(prefit_stages):
    nb, knn, X_val, y_val = prefit_stages
    always = Cascade([("nb", nb), ("knn", knn)], prefit=True, costs=[1, 2], thresholds=[0.0]).fit(X_val, y_val)
    np.testing.assert_array_equal(always.predict(X_val), nb.predict(X_val))
    never = always.set_params(thresholds=[1.0]).fit(X_val, y_val)
    np.testing.assert_array_equal(never.predict(X_val), knn.predict(X_val))
    assert never.stage_share_ == {"nb": 0.0, "knn": 1.0}


def test_fit_inside_holds_out_validation_and_is_deterministic(digits):
    X_tr, X_te, y_tr, y_te = digits
    make = lambda: Cascade([("lr", LogisticRegression(max_iter=300)),  # noqa: E731
                            ("knn", KNeighborsClassifier(5))], validation_fraction=0.3, random_state=1)
    a, b = make().fit(X_tr, y_tr), make().fit(X_tr, y_tr)
    np.testing.assert_array_equal(a.thresholds_, b.thresholds_)
    np.testing.assert_array_equal(a.predict(X_te), b.predict(X_te))
    assert a.costs_.shape == (2,) and np.all(a.costs_ > 0)
    assert a.score(X_te, y_te) > 0.93


def test_three_stages(prefit_stages):
    nb, knn, X_val, y_val = prefit_stages
    tree = DecisionTreeClassifier(max_depth=6, random_state=0).fit(X_val[:200], y_val[:200])
    if not np.array_equal(tree.classes_, knn.classes_):
        pytest.skip("tiny tree missed a class")
    cascade = Cascade([("nb", nb), ("tree", tree), ("knn", knn)], prefit=True, costs=[1, 2, 10],
                      n_thresholds=8).fit(X_val, y_val)
    assert cascade.thresholds_.shape == (2,)
    assert cascade.curve_["thresholds"].shape[1] == 2
    assert sum(cascade.stage_share_.values()) == pytest.approx(1.0)


def test_input_stages_unchanged(prefit_stages, digits):
    X_tr, _, y_tr, _ = digits
    lr = LogisticRegression(max_iter=300)
    Cascade([("lr", lr), ("nb", GaussianNB())], costs=[1, 1]).fit(X_tr, y_tr)
    assert not hasattr(lr, "classes_")  # cloned, not fitted in place


@pytest.mark.parametrize("kwargs, error, match", [
    ({"thresholds": [1.5]}, ConfigError, r"threshold 1.5 is outside \[0, 1\]"),
    ({"thresholds": [-0.1]}, ConfigError, r"outside \[0, 1\]"),
    ({"thresholds": [0.5, 0.5]}, ConfigError, "2 values for 2 stages"),
    ({"confidence": "gini"}, ConfigError, "confidence='gini'"),
    ({"max_accuracy_drop": 2}, ConfigError, "max_accuracy_drop=2"),
    ({"cost_budget": -1}, ConfigError, "cost_budget=-1"),
    ({"costs": [1.0]}, ConfigError, "one finite cost"),
    ({"validation_fraction": 1.0}, ConfigError, "validation_fraction"),
])
def test_bad_parameters(digits, kwargs, error, match):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(error, match=match):
        Cascade([("nb", GaussianNB()), ("knn", KNeighborsClassifier())], **kwargs).fit(X_tr, y_tr)


def test_stages_with_different_classes(digits):
    X_tr, _, y_tr, _ = digits
    nb = GaussianNB().fit(X_tr, y_tr)
    knn = KNeighborsClassifier().fit(X_tr[y_tr < 9], y_tr[y_tr < 9])
    with pytest.raises(ModelError, match=r"stage 'knn' predicts classes \[0, 1, 2, 3, 4, 5, 6, 7, 8\]"):
        Cascade([("nb", nb), ("knn", knn)], prefit=True, costs=[1, 1]).fit(X_tr, y_tr)


@pytest.mark.parametrize("stages, error, match", [
    ([], ConfigError, "non-empty list"),
    ([("a", GaussianNB()), ("a", GaussianNB())], ConfigError, "appears twice"),
    ([("a", GaussianNB()), ("b", object())], ModelError, "has no predict_proba"),
    ([GaussianNB()], ConfigError, "not a \\(name, estimator\\) pair"),
])
def test_bad_stages(digits, stages, error, match):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(error, match=match):
        Cascade(stages, costs=[1] * max(len(stages), 1)).fit(X_tr, y_tr)


def test_prefit_requires_fitted_stages(digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ModelError, match="stage 'nb' is not fitted"):
        Cascade([("nb", GaussianNB()), ("knn", KNeighborsClassifier())], prefit=True).fit(X_tr, y_tr)


def test_too_few_samples_per_class():
    X = np.arange(12, dtype=float).reshape(6, 2)
    y = np.array([0, 0, 0, 1, 1, 2])
    with pytest.raises(DataError, match="class 2 has 1 sample"):
        _small_cascade().fit(X, y)


def test_torch_stage_and_stacking_stage():
    """A trained torch module (via ss.TorchClassifier) first, a slimstack ensemble last."""
    train = ss.datasets.load("digits", split="train", seed=0)
    val = ss.datasets.load("digits", split="val", seed=0)
    module = ss.zoo.train(ss.zoo.digits_mlp(hidden=(32,)), train, epochs=5, seed=0)
    small = ss.TorchClassifier(module, classes=np.arange(10)).fit(train.flat().X, train.y)
    stack = ss.StackingEnsemble([("nb", GaussianNB()), ("knn", KNeighborsClassifier(5))], cv=3,
                                random_state=0).fit(train.flat().X, train.y)
    # 359 validation rows cannot bound a 1-point drop at 95% (no disagreement at all bounds it at
    # 1.02 points), so the allowance here is 3 points
    cascade = Cascade([("torch", small), ("stack", stack)], prefit=True, max_accuracy_drop=0.03)
    cascade.fit(val.flat().X, val.y)
    assert cascade.costs_[0] > 0 and cascade.costs_[1] > 0
    assert cascade.validation_accuracy_ >= cascade.reference_accuracy_ - cascade.drop_bound_ - 1e-9
    assert cascade.drop_bound_ <= 0.03
    assert cascade.stage_share_["torch"] > 0.3


def test_frozen_prefit_stages_survive_clone(prefit_stages):
    """clone() refits nothing: ss.Frozen keeps prefit stages fitted through clone and grid search."""
    from sklearn.base import clone

    nb, knn, X_val, y_val = prefit_stages
    cascade = Cascade([("lr", ss.Frozen(nb)), ("knn", ss.Frozen(knn))], prefit=True, costs=[1.0, 10.0])
    copy_ = clone(cascade).fit(X_val, y_val)
    np.testing.assert_array_equal(copy_.predict(X_val[:20]), cascade.fit(X_val, y_val).predict(X_val[:20]))
