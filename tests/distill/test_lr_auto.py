"""Default distillation settings must not make a student worse than training it on labels alone.

Issue 13.3: with the old fixed lr=1e-3, a 64-24-10 MLP distilled for 30 epochs stayed below the same
MLP trained on labels by ``ss.zoo.train`` for 30 epochs. ``lr="auto"`` chooses the rate per student.
"""

import pytest
import torch

import slimstack as ss
from slimstack.distill._lr_range import CANDIDATES, _pick, probe_steps

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
    assert tried["steps_per_candidate"] == probe_steps(epochs * 17) == 25


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


@pytest.mark.parametrize("losses, chosen", [
    ([5.0, 4.0, 3.0, 2.0, 1.0], 1e-1),                   # steadily better: the largest
    ([5.0, 3.0, 2.99, 2.98, 9.0], 3e-3),                 # near ties go to the smaller rate
    ([5.0, 2.0, float("inf"), 1.0, float("nan")], 3e-2),  # diverged candidates are skipped
    ([float("inf")] * 5, 1e-3),                          # all diverged: the smallest
])
def test_pick_prefers_the_smaller_rate_unless_clearly_better(losses, chosen):
    import math

    table = [{"lr": lr, "loss": math.inf if math.isnan(v) else v} for lr, v in zip(CANDIDATES, losses)]
    assert _pick(table) == chosen


def test_lr_must_be_auto_or_positive():
    with pytest.raises(ss.errors.ConfigError, match=r"lr='fast' must be 'auto' or a number > 0"):
        ss.DistillConfig(lr="fast")
    assert ss.DistillConfig().lr == "auto"
    assert ss.DistillConfig.from_dict(ss.DistillConfig().to_dict()).lr == "auto"
