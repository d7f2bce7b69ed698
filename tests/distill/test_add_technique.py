"""Adding a distillation technique takes one file: this one (docs/adding-a-technique.md walks through it).

The fixture defines a whole new technique, ``LogitMatching`` (Ba & Caruana 2014: regress the
student's logits on the teacher's), with public names only: one config, one handler, one
registration. It sits in a fixture so the registries are restored afterwards (the contract suite
requires a case for every registered config); in a user's file the same lines sit at module level.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack import _config
from slimstack._config import config_from_dict
from slimstack.errors import ConfigError


@pytest.fixture
def LogitMatching(monkeypatch):
    monkeypatch.setattr(_config, "_CONFIGS", dict(_config._CONFIGS))  # restored after the test
    monkeypatch.setattr(ss.distill.REGISTRY, "_handlers", dict(ss.distill.REGISTRY._handlers))

    # ---- the new technique: everything below is what its file holds --------------------------
    @ss.register_config
    @dataclasses.dataclass(frozen=True)
    class LogitMatching(ss.Config):
        """Ba & Caruana (2014): the student regresses the teacher's logits (squared error, no temperature)."""

        kind = "distill"

        epochs: int = 10
        batch_size: int = 64
        lr: float = 1e-3
        seed: int = 0

        def validate(self) -> None:
            for name in ("epochs", "batch_size"):
                value = getattr(self, name)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ConfigError(f"LogitMatching.{name}={value!r} must be a positive integer")

    class Objective(torch.nn.Module):  # what the shared training loop minimises: forward(rows) -> {"loss"}
        def __init__(self, student, X, target):
            super().__init__()
            self.student, self.X, self.target = student, X, target

        def forward(self, idx):
            return {"loss": torch.nn.functional.mse_loss(self.student(self.X[idx]), self.target[idx])}

    @ss.distill.REGISTRY.register(LogitMatching)
    class LogitMatchingHandler(ss.distill.DistillHandler):
        def applies_to(self, student):
            return None if isinstance(student, torch.nn.Module) else "LogitMatching trains torch modules"

        def run(self, student, config, request):
            started = time.perf_counter()
            X = torch.as_tensor(request.train.X)
            target = ss.distill.ModuleTeacher(request.options["teacher"]).outputs(request.train.X)
            student = copy.deepcopy(student)  # the caller's student is never trained
            history, trained = self.fit(Objective(student, X, target), len(X), config, request, lr=config.lr,
                                        identity=(len(X),))
            return self.result(student, history, {"loss": "logit-mse", **trained}, started)
    # ---- end of the technique's file ------------------------------------------------------------

    return LogitMatching


@pytest.fixture(scope="module")
def setup():
    train = ss.datasets.load("digits", split="train", seed=0).head(320)
    teacher = ss.zoo.train(ss.zoo.digits_mlp(seed=0, hidden=(32,)), train, epochs=3, seed=0)
    return train, teacher


def _logit_mse(student, teacher, data):
    with torch.no_grad():
        x = torch.as_tensor(data.X)
        return float(((student.eval()(x) - teacher.eval()(x)) ** 2).mean())


def test_the_new_technique_runs_through_ss_distill(LogitMatching, setup):
    train, teacher = setup
    student = ss.zoo.digits_mlp(seed=1, hidden=(16,))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    d = ss.distill(teacher, student, LogitMatching(epochs=4, lr=3e-3), train=train)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # input unchanged
    assert _logit_mse(d.model, teacher, train) < 0.5 * _logit_mse(student, teacher, train)
    assert isinstance(d, ss.DistillResult) and d.summary["loss"] == "logit-mse" and d.summary["steps"] == 20
    assert {r.action for r in d.records} == {"trained"} and len(d.history) == 4
    again = ss.distill(teacher, student, LogitMatching(epochs=4, lr=3e-3), train=train)
    assert all(torch.equal(a, b) for a, b in zip(d.model.state_dict().values(), again.model.state_dict().values()))


def test_the_new_technique_round_trips_and_is_a_recipe_step(LogitMatching, setup):
    from slimstack.recipe._steps import StepContext, run_step

    train, teacher = setup
    cfg = LogitMatching(epochs=2)
    assert config_from_dict(cfg.to_dict()) == cfg
    ctx = StepContext(original=teacher, train=train, val=None, test=None, example_inputs=None)
    model, record = run_step("distill", {"method": "LogitMatching", "epochs": 2, "student": {"shrink": {"width": 0.5}}},
                             teacher, ctx)
    assert record["verb"] == "distill" and record["summary"]["loss"] == "logit-mse" and len(record["history"]) == 2
    assert record["records"] and all(r["action"] == "trained" for r in record["records"])
    assert model is not teacher
    with pytest.raises(ConfigError, match=r"LogitMatching.epochs=0 must be a positive integer"):
        LogitMatching(epochs=0)


def test_a_new_loss_name_is_one_registration(monkeypatch, setup):
    OUTPUT_LOSSES, OutputLoss = ss.distill.losses.OUTPUT_LOSSES, ss.distill.losses.OutputLoss
    monkeypatch.setattr(OUTPUT_LOSSES, "_items", dict(OUTPUT_LOSSES._items))
    with pytest.raises(ConfigError, match=r"loss='l1' is not one of: auto, kd, mse"):
        ss.DistillConfig(loss="l1")
    OUTPUT_LOSSES.register("l1", OutputLoss(lambda out, target, labels, temperature, alpha, task:
                                            {"loss": (out - target).abs().mean()}))
    train, teacher = setup
    d = ss.distill(teacher, ss.zoo.digits_mlp(seed=1, hidden=(16,)),
                   ss.DistillConfig(loss="l1", epochs=2, lr=3e-3, progress=False), train=train)
    assert d.summary["loss"] == "l1" and np.isfinite(d.history[-1]["loss"])


def test_only_the_built_in_technique_remains_outside_the_fixture():
    assert set(_config.registered_configs("distill")) == {"DistillConfig"}
    assert "l1" not in ss.distill.losses.OUTPUT_LOSSES
