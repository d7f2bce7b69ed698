"""ss.distill on small digits models: quality, teachers, unlabelled data, bad input."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

import slimstack as ss
from slimstack.datasets import Dataset
from slimstack.distill import EnsembleTeacher, TrainingDivergedError, teacher_targets
from slimstack.distill._data import as_rows

from .conftest import accuracy, state_equal


def small_student(seed=0):
    torch.manual_seed(seed)
    return ss.zoo.digits_mlp(hidden=(24,))


def test_distilled_student_learns_from_the_teacher(mlp_teacher, digits_splits, fast_config):
    student = small_student()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in mlp_teacher.state_dict().items()}
    d = ss.distill(mlp_teacher, student, fast_config.replace(epochs=12), train=digits_splits["train"],
                   val=digits_splits["val"])
    assert accuracy(d.model, digits_splits["test"]) > 0.85
    assert accuracy(d.model, digits_splits["test"]) > accuracy(student, digits_splits["test"]) + 0.5
    # Neither the student passed in nor the teacher changed.
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert all(torch.equal(teacher_before[k], v) for k, v in mlp_teacher.state_dict().items())
    assert [h["epoch"] for h in d.history] == list(range(0, 13))  # epoch 0: the starting weights' score
    assert {"loss", "kd", "ce", "val", "lr"} <= set(d.history[1])
    assert d.history[-1]["loss"] < d.history[1]["loss"]
    assert d.history[-1]["val"] > d.history[0]["val"] + 0.5
    assert d.record["loss"] == "kd" and d.record["best_epoch"] is not None


def test_same_seed_same_student_different_seed_different(mlp_teacher, digits_splits, fast_config):
    train = digits_splits["train"].head(256)
    a = ss.distill(mlp_teacher, small_student(), fast_config, train=train).model
    b = ss.distill(mlp_teacher, small_student(), fast_config, train=train).model
    c = ss.distill(mlp_teacher, small_student(), fast_config.replace(seed=1), train=train).model
    assert state_equal(a, b)
    assert not state_equal(a, c)


def test_unlabelled_arrays_train_on_the_teacher_alone(mlp_teacher, digits_splits, fast_config):
    X = digits_splits["train"].X  # no labels at all
    d = ss.distill(mlp_teacher, small_student(), fast_config.replace(epochs=8), train=X)
    assert set(d.history[0]) >= {"loss", "kd"} and "ce" not in d.history[0]
    agree = (d.model(torch.as_tensor(digits_splits["test"].X)).argmax(-1)
             == mlp_teacher(torch.as_tensor(digits_splits["test"].X)).argmax(-1)).float().mean()
    assert agree > 0.85


def test_ensemble_teacher_averages_probabilities_of_modules_and_estimators(mlp_teacher, digits_splits):
    train = digits_splits["train"]
    lr = LogisticRegression(max_iter=300).fit(train.flat().X, train.y)
    ens = EnsembleTeacher([mlp_teacher, lr])
    rows = as_rows(train.head(32), "train")
    targets, _ = teacher_targets(ens, rows)
    with torch.no_grad():
        p_mlp = torch.softmax(mlp_teacher(torch.as_tensor(rows.X)), -1)
    p_lr = torch.as_tensor(lr.predict_proba(rows.X.reshape(32, -1)), dtype=torch.float32)
    assert torch.allclose(targets.exp(), (p_mlp + p_lr) / 2, atol=1e-5)
    # A plain list is an ensemble too, and the student learns from it.
    d = ss.distill([mlp_teacher, lr], small_student(), ss.DistillConfig(epochs=10, lr=1e-2, progress=False, threads=1),
                   train=train)
    assert d.record["teacher"] == "EnsembleTeacher"
    assert accuracy(d.model, digits_splits["test"]) > 0.85


def test_cached_teacher_runs_once(mlp_teacher, digits_splits, fast_config, tmp_path):
    calls = []
    original = mlp_teacher.forward

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = mlp_teacher

        def forward(self, x):
            calls.append(len(x))
            return original(x)

    teacher = Counting()
    cfg = fast_config.replace(epochs=1, cache_dir=str(tmp_path))
    train = digits_splits["train"].head(300)
    first = ss.distill(teacher, small_student(), cfg, train=train)
    n_first = len(calls)
    second = ss.distill(teacher, small_student(), cfg, train=train)
    assert n_first == 2  # 300 rows in batches of 256: the teacher ran once over the data
    assert len(calls) == n_first  # the second run read the cache and never called the teacher
    assert first.record["cache_hit"] is False and second.record["cache_hit"] is True
    assert list(tmp_path.glob("teacher-*.safetensors"))
    assert state_equal(first.model, second.model)
    # Other data: another cache entry, not the stale one.
    third = ss.distill(teacher, small_student(), cfg, train=digits_splits["train"].head(200))
    assert third.record["cache_hit"] is False and len(list(tmp_path.glob("teacher-*.safetensors"))) == 2


def test_precomputed_outputs_are_a_teacher(mlp_teacher, digits_splits, fast_config):
    train = digits_splits["train"]
    with torch.no_grad():
        logits = mlp_teacher(torch.as_tensor(train.X)).numpy()
    d = ss.distill(logits, small_student(), fast_config.replace(epochs=10), train=train)
    assert d.record["teacher"] == "precomputed"
    assert accuracy(d.model, digits_splits["test"]) > 0.85
    with pytest.raises(ss.DataError, match="precomputed teacher outputs have 10 rows but the training data has"):
        ss.distill(logits[:10], small_student(), fast_config, train=train)


def test_feature_matching_learns_a_projection_between_widths(mlp_teacher, digits_splits, fast_config):
    cfg = fast_config.replace(epochs=4, features=(("net.2", "net.4"),), feature_weight=0.5)  # ReLU 24 -> ReLU 32
    d = ss.distill(mlp_teacher, small_student(), cfg, train=digits_splits["train"])
    assert "feat0" in d.history[0] and d.history[-1]["feat0"] < d.history[0]["feat0"]
    assert "Linear(in_features=24, out_features=32" in d.record["projections_dropped"][0]
    assert not d.model._forward_hooks and not mlp_teacher.net[4]._forward_hooks  # hooks removed
    with pytest.raises(ss.UnknownNameError, match="unknown teacher layer 'net.9'"):
        ss.distill(mlp_teacher, small_student(), cfg.replace(features=(("net.2", "net.9"),)),
                   train=digits_splits["train"])


def test_regression_distillation_uses_mse(digits_splits, fast_config):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    X = digits_splits["train"].X
    y = np.zeros(len(X), np.float32)  # useless labels: with alpha=1 only the teacher counts
    train = Dataset(name="r", task="regression", X=X, y=y)
    d = ss.distill(teacher, nn.Sequential(nn.Flatten(), nn.Linear(64, 1)),
                   fast_config.replace(epochs=30, lr=1e-2, alpha=1.0), train=train)
    assert d.record["loss"] == "mse"
    assert d.history[-1]["mse"] < 0.1 * d.history[0]["mse"]


# ------------------------------------------------------------------ bad input
def test_output_shape_mismatch_names_both_shapes_and_suggests_a_fix(mlp_teacher, digits_splits, fast_config):
    with pytest.raises(ss.ShapeError, match=r"teacher outputs \(10,\) per row but the student outputs \(7,\)"):
        ss.distill(mlp_teacher, ss.zoo.digits_mlp(hidden=(8,), num_classes=7), fast_config, train=digits_splits["train"])
    emb_teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 12))
    with pytest.raises(ss.ShapeError, match=r"nn.Sequential\(student, nn.Linear\(5, 12\)\)"):
        ss.distill(emb_teacher, nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), fast_config.replace(loss="mse"),
                   train=digits_splits["train"].X)


def test_empty_and_nan_data_are_refused(mlp_teacher, digits_splits, fast_config):
    with pytest.raises(ss.DataError, match="the train data is empty"):
        ss.distill(mlp_teacher, small_student(), fast_config, train=np.zeros((0, 1, 8, 8), np.float32))
    bad = digits_splits["train"].X[:20].copy()
    bad[3, 0, 0, 0] = np.nan
    with pytest.raises(ss.DataError, match="NaN or inf in 1 rows"):
        ss.distill(mlp_teacher, small_student(), fast_config, train=bad)


class _BlowsUp(nn.Module):
    """Returns NaN from its ``after``-th training call on: a loss that diverges mid-run."""

    def __init__(self, after):
        super().__init__()
        self.lin = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.after, self.calls = after, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.lin(x)
        return out * float("nan") if self.training and self.calls > self.after else out


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(mlp_teacher, digits_splits, tmp_path):
    train = digits_splits["train"].head(256)  # 4 steps per epoch: NaN in the third epoch
    cfg = ss.DistillConfig(epochs=5, batch_size=64, lr=1e-3, progress=False, checkpoint_dir=str(tmp_path))
    with pytest.raises(TrainingDivergedError, match=r"non-finite at epoch 3, step 9 .*last good checkpoint \(2\)"):
        ss.distill(mlp_teacher, _BlowsUp(after=8), cfg, train=train)
    blob = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert '"epoch": 2' in blob["state"]
    assert all(torch.isfinite(v).all() for v in blob["objective"].values() if v.is_floating_point())


def test_wrong_kinds_of_input(mlp_teacher, digits_splits, fast_config):
    with pytest.raises(ss.ModelError, match="cannot use a str as a teacher"):
        ss.distill("teacher.pt", small_student(), fast_config, train=digits_splits["train"])
    with pytest.raises(ss.ModelError, match="the student must be a torch nn.Module"):
        ss.distill(mlp_teacher, LogisticRegression(), fast_config, train=digits_splits["train"])
    with pytest.raises(ss.ConfigError, match="loss='kd' needs class logits"):
        ss.distill(nn.Sequential(nn.Flatten(), nn.Linear(64, 1)), nn.Sequential(nn.Flatten(), nn.Linear(64, 1)),
                   fast_config.replace(loss="kd"),
                   train=Dataset(name="r", task="regression", X=digits_splits["train"].X[:50], y=np.zeros(50, np.float32)))
    with pytest.raises(ss.ConfigError, match="features matches hidden layers, which needs the teacher as one torch module"):
        ss.distill([mlp_teacher, mlp_teacher], small_student(), fast_config.replace(features=(("net.1", "net.1"),)),
                   train=digits_splits["train"])
