"""The generic trainer: checkpoints and resume, early stopping, progress bar, schedules."""

import pytest
import torch
from torch import nn

import slimstack as ss
from slimstack import _training as _trainer
from slimstack._training import _schedule
from slimstack.distill import Trainer, TrainSettings

from .conftest import state_equal


class _Stop(Exception):
    pass


def test_resume_after_interruption_gives_the_same_student(mlp_teacher, digits_splits, fast_config, tmp_path):
    train = digits_splits["train"].head(320)
    cfg = fast_config.replace(epochs=4, checkpoint_dir=str(tmp_path / "ckpt"))
    student = ss.zoo.digits_mlp(hidden=(16,), dropout=0.2)  # dropout: the RNG state must resume too

    def interrupt(record):
        if record["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        ss.distill(mlp_teacher, student, cfg, train=train, on_epoch_end=interrupt)
    assert (tmp_path / "ckpt" / "checkpoint.pt").exists()
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".")]  # no temp files left
    resumed = ss.distill(mlp_teacher, student, cfg, train=train)
    assert resumed.record["resumed_from_epoch"] == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    straight = ss.distill(mlp_teacher, student, cfg.replace(checkpoint_dir=str(tmp_path / "other")), train=train)
    assert state_equal(resumed.model, straight.model)
    assert resumed.history[-1]["loss"] == pytest.approx(straight.history[-1]["loss"], rel=1e-6)


def test_a_checkpoint_from_another_run_is_not_resumed(mlp_teacher, digits_splits, fast_config, tmp_path):
    cfg = fast_config.replace(epochs=1, checkpoint_dir=str(tmp_path))
    train = digits_splits["train"].head(128)
    ss.distill(mlp_teacher, ss.zoo.digits_mlp(hidden=(16,)), cfg, train=train)
    with pytest.raises(ss.ConfigError, match="written by a different run.*resume=False"):
        ss.distill(mlp_teacher, ss.zoo.digits_mlp(hidden=(16,)), cfg.replace(lr=0.5), train=train)
    fresh = ss.distill(mlp_teacher, ss.zoo.digits_mlp(hidden=(16,)), cfg.replace(lr=0.5, resume=False), train=train)
    assert "resumed_from_epoch" not in fresh.record


def test_early_stopping_keeps_the_best_epoch():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    scores = iter([0.4, 0.5, 0.9, 0.7, 0.6, 0.95, 0.99])  # start, then best at epoch 2, then two worse epochs

    class Objective(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, idx):
            return {"loss": (self.model(idx.float().unsqueeze(1)) ** 2).mean()}

    weights = []

    def evaluate():
        weights.append(model.weight.detach().clone())
        return next(scores)

    s = TrainSettings(epochs=6, batch_size=4, lr=0.01, patience=2, seed=0)
    t = Trainer(Objective(), 8, s, evaluate=evaluate)
    history = t.fit()
    assert [h["val"] for h in history] == [0.4, 0.5, 0.9, 0.7, 0.6]
    assert t.record["best_epoch"] == 2 and t.record["stopped"].startswith("early stop")
    assert torch.equal(model.weight, weights[2])


def test_max_steps_and_progress_bar(mlp_teacher, digits_splits, capsys):
    cfg = ss.DistillConfig(epochs=5, batch_size=64, max_steps=7, progress=True, threads=1)
    d = ss.distill(mlp_teacher, ss.zoo.digits_mlp(hidden=(16,)), cfg, train=digits_splits["train"])
    assert d.record["steps"] == 7 and d.record["stopped"] == "max_steps=7 reached"
    out = capsys.readouterr().out
    assert "distill" in out and "7/7" in out


def test_schedules():
    cos = _schedule("cosine", 0.0, 10)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    warm = _schedule("linear", 0.2, 10)
    assert [warm(0), warm(1)] == [0.5, 1.0] and warm(10) == 0.0
    assert _schedule("constant", 0.0, 10)(9) == 1.0


def test_global_batch_must_divide_by_the_processes(monkeypatch):
    monkeypatch.setattr(_trainer, "world", lambda: (0, 2))
    with pytest.raises(ss.ConfigError, match="batch_size=5 is the global batch and must divide by the 2 processes"):
        Trainer(nn.Linear(1, 1), 10, TrainSettings(epochs=1, batch_size=5, lr=0.1))
