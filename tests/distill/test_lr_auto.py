"""Default distillation settings must not make a student worse than training it on labels alone.

Issue 13.3: with the old fixed lr=1e-3, a 64-24-10 MLP distilled for 30 epochs stayed below the same
MLP trained on labels by ``ss.zoo.train`` for 30 epochs. ``lr="auto"`` chooses the rate per student.
"""

import pytest
import torch

import slimstack as ss
from slimstack.distill._lr_range import CANDIDATES, RUNGS, pick, probe_steps, range_test, survivors

from .conftest import accuracy, state_equal

STUDENTS = {
    "linear": lambda seed: ss.zoo.digits_mlp(seed=seed, hidden=()),
    "mlp16": lambda seed: ss.zoo.digits_mlp(seed=seed, hidden=(16,)),
    "mlp128": lambda seed: ss.zoo.digits_mlp(seed=seed, hidden=(128,)),
    "cnn4-8": lambda seed: ss.zoo.digits_cnn(seed=seed, channels=(4, 8), hidden=16),
}


@pytest.fixture(scope="module")
def cnn_teacher(digits_splits):
    """The digits CNN of the issue, trained briefly (about 97% test accuracy)."""
    return ss.zoo.train(ss.zoo.digits_cnn(), digits_splits["train"], epochs=10, seed=0)


@pytest.mark.parametrize("name", list(STUDENTS))
def test_default_distillation_matches_label_training_under_the_same_budget(name, digits_splits, cnn_teacher):
    tr, te = digits_splits["train"], digits_splits["test"]
    epochs, seed = 4, 3
    labels_only = accuracy(ss.zoo.train(STUDENTS[name](seed), tr, epochs=epochs, seed=seed), te)
    cfg = ss.DistillConfig(temperature=4.0, alpha=0.3, epochs=epochs, progress=False, seed=seed, threads=1)
    assert accuracy(cnn_teacher, te) > 0.95
    d = ss.distill(cnn_teacher, STUDENTS[name](seed), cfg, train=tr)
    distilled = accuracy(d.model, te)
    assert distilled >= labels_only - 0.005, (name, distilled, labels_only, d.record["lr"])
    assert d.record["lr"] in CANDIDATES
    tried = d.record["lr_range_test"]
    assert [r["lr"] for r in tried["candidates"]] == list(CANDIDATES)
    assert tried["steps_per_rung"] == probe_steps(epochs * 17) == 25 and tried["rungs"] == RUNGS == 2
    # All 5 rates train 25 steps; the better 3 train 25 more, and the winner is one of them.
    assert sorted(len(r["losses"]) for r in tried["candidates"]) == [1, 1, 2, 2, 2]
    assert tried["probe_steps"] == 5 * 25 + 3 * 25
    assert len(next(r for r in tried["candidates"] if r["lr"] == d.record["lr"])["losses"]) == 2


def test_range_test_leaves_the_run_deterministic_and_inputs_untouched(digits_splits, mlp_teacher):
    tr = digits_splits["train"]
    student = ss.zoo.digits_mlp(hidden=(16,))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    cfg = ss.DistillConfig(epochs=2, progress=False, seed=1, threads=1)
    a = ss.distill(mlp_teacher, student, cfg, train=tr)
    b = ss.distill(mlp_teacher, student, cfg, train=tr)
    assert state_equal(a.model, b.model)
    assert a.record["lr"] == b.record["lr"]
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    # A fixed rate skips the test and is recorded as given.
    c = ss.distill(mlp_teacher, student, cfg.replace(lr=2e-3), train=tr)
    assert c.record["lr"] == 2e-3 and "lr_range_test" not in c.record


INF = float("inf")


@pytest.mark.parametrize("rung1, survived", [
    ([5.0, 4.0, 3.0, 2.0, 1.0], [3e-2, 1e-1, 1e-2]),    # the better half, rounded up (3 of 5)
    ([1.0, 1.0, 1.0, 9.0, 9.0], [1e-3, 3e-3, 1e-2]),    # ties keep the smaller rates
    ([5.0, 2.0, INF, 1.0, INF], [3e-3, 3e-2, 1e-3]),     # a diverged rate never survives...
    ([INF, INF, INF, INF, 2.0], [1e-1]),                 # ...even when fewer than half are left
    ([INF] * 5, []),
])
def test_survivors_are_the_better_half_by_loss(rung1, survived):
    assert survivors(dict(zip(CANDIDATES, rung1))) == sorted(survived)


def _table(*losses):
    """Rows as range_test returns them, from each candidate's losses per rung (ascending rates)."""
    return [{"lr": lr, "losses": list(ls), "loss": ls[-1]} for lr, ls in zip(CANDIDATES, losses)]


@pytest.mark.parametrize("table, chosen", [
    # Steadily better with the rate, at both rungs: the largest.
    (_table([5.0], [4.0], [3.0, 2.0], [2.0, 1.0], [1.0, 0.5]), 1e-1),
    # Short-horizon lead lost: 1e-1 starts fastest, 3e-2 is lowest once the probe is doubled.
    (_table([7.0], [6.2], [3.6, 0.6], [2.2, 1.0], [1.9, 1.4]), 1e-2),
    # A rate dropped at rung 1 cannot win, however low a loss it would have reached.
    (_table([9.0], [8.0], [3.0, 2.0], [2.0, 1.5], [1.0, 1.8]), 3e-2),
    # Near ties at the last rung go to the smaller rate (a larger one must be 2 % better).
    (_table([5.0], [4.0], [3.0, 1.00], [2.0, 0.99], [1.0, 0.985]), 1e-2),
    (_table([5.0], [4.0], [3.0, 1.00], [2.0, 0.97], [1.0, 0.985]), 3e-2),
    # A survivor that diverges at rung 2 is skipped.
    (_table([5.0], [4.0], [3.0, 2.0], [2.0, INF], [1.0, 1.5]), 1e-1),
    # Everything diverged: the smallest rate.
    (_table([INF], [INF], [INF], [INF], [INF]), 1e-3),
    (_table([INF], [INF], [3.0, INF], [2.0, INF], [1.0, INF]), 1e-3),
])
def test_pick_takes_the_rate_whose_lead_survives_the_longer_probe(table, chosen):
    assert pick(table) == chosen


class _Noisy(torch.nn.Module):
    """An objective with dropout and its own augmentation generator, as DistillObjective has."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.X, self.y = torch.randn(200, 6, generator=g), torch.randint(0, 3, (200,), generator=g)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                       torch.nn.Linear(16, 3))
        self._aug = torch.Generator().manual_seed(11)

    def forward(self, idx):
        x = self.X[idx]
        if self.training:
            x = x + 0.1 * torch.randn(x.shape, generator=self._aug)
        return {"loss": torch.nn.functional.cross_entropy(self.net(x), self.y[idx])}


def test_rung_two_continues_each_run_exactly():
    """Pausing a candidate after rung 1 and resuming it equals one uninterrupted run of twice the steps."""
    torch.manual_seed(0)
    obj = _Noisy()
    before = {k: v.clone() for k, v in obj.state_dict().items()}
    aug_state, rng = obj._aug.get_state(), torch.get_rng_state()

    def adam(params, lr):
        return torch.optim.AdamW(params, lr=lr)

    kw = {"n_rows": 200, "batch_size": 32, "make_optimizer": adam, "seed": 3, "grad_clip": 1.0}
    _, two_rungs = range_test(obj, steps=9, candidates=(1e-2, 5e-2), **kw)  # 9 steps: rung 2 starts mid-epoch
    assert sorted(len(r["losses"]) for r in two_rungs) == [1, 2]
    survivor = next(r for r in two_rungs if len(r["losses"]) == 2)
    _, straight = range_test(obj, steps=18, candidates=(survivor["lr"],), **kw)
    assert straight[0]["losses"][0] == survivor["losses"][1]
    assert survivor["steps"] == 18
    # The objective, its generator and the global random stream are left as they were.
    assert all(torch.equal(before[k], v) for k, v in obj.state_dict().items())
    assert torch.equal(obj._aug.get_state(), aug_state) and torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_fast_start_alone_does_not_choose_the_rate(seed, digits_splits, cnn_teacher):
    """The case that made the 25-step probe over-pick: a 4-8-16 CNN (BatchNorm) leads at 3e-2 after 25 steps,
    but 1e-2 leads once the probe is doubled (and trained the better student in full 10- and 30-epoch runs)."""
    cfg = ss.DistillConfig(temperature=4.0, alpha=0.3, epochs=1, progress=False, seed=seed, threads=1)
    d = ss.distill(cnn_teacher, STUDENTS["cnn4-8"](seed), cfg, train=digits_splits["train"])
    rows = {r["lr"]: r for r in d.record["lr_range_test"]["candidates"]}
    assert min(rows, key=lambda lr: rows[lr]["losses"][0]) == 3e-2  # rung 1 alone would take 3e-2
    assert d.record["lr"] == 1e-2 and rows[1e-2]["loss"] < rows[3e-2]["loss"]


def test_lr_must_be_auto_or_positive():
    with pytest.raises(ss.errors.ConfigError, match=r"lr='fast' must be 'auto' or a number > 0"):
        ss.DistillConfig(lr="fast")
    assert ss.DistillConfig().lr == "auto"
    assert ss.DistillConfig.from_dict(ss.DistillConfig().to_dict()).lr == "auto"
