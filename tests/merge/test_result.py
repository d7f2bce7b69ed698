"""ss.merge through its registry: one handler per method, MergeResult records, scoring via ss.measure.score."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack._config import Handler
from slimstack._result import Result
from slimstack.errors import UnknownNameError
from slimstack.merge import METHODS, MergeResult
from slimstack.merge._handlers import MERGERS


def _mlps(n=3):
    torch.manual_seed(0)
    base = ss.zoo.digits_mlp(hidden=(16,))
    models = []
    for i in range(n):
        m = copy.deepcopy(base)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
        models.append(m)
    return base, models


def test_every_method_name_has_one_handler():
    assert set(METHODS) == {"uniform", "greedy_soup", "task_arithmetic", "ties"}
    for name, cls in METHODS.items():
        (h,) = MERGERS.handlers_for(cls())
        assert isinstance(h, Handler) and h.method == name and h.config is cls and "torch" in h.backends


def test_unknown_method_names_the_closest():
    _, models = _mlps(2)
    with pytest.raises(UnknownNameError, match=r"unknown merge method 'unifrom'.*Did you mean 'uniform'"):
        ss.merge(models, "unifrom")


def test_return_result_gives_records_per_tensor_and_the_same_summary():
    base, models = _mlps()
    r = ss.merge(models, "ties", base=base, density=0.3, return_result=True)
    assert isinstance(r, MergeResult) and isinstance(r, Result)
    assert r.model.merge_record_ is r.summary and r.summary["method"] == "TiesMerging"
    state = r.model.state_dict()
    assert [x.layer for x in r.records] == list(state)  # every entry recorded (this MLP has parameters only)
    assert all(x.action == "merged" and x.before == state[x.layer].numel() for x in r.records)
    per = [x.extra["sign_conflicts"] for x in r.records]
    assert sum(per) == r.summary["ties"]["sign_conflicts"] > 0
    d = r.to_dict()
    assert d["verb"] == "merge" and d["summary"]["ties"]["entries"] == sum(x.before for x in r.records)
    plain = ss.merge(models, "ties", base=base, density=0.3)  # the default return is the model, as before
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(v, state[k])


def test_batchnorm_buffers_and_fixed_entries_are_recorded():
    torch.manual_seed(0)
    a, b = ss.zoo.digits_cnn(channels=(4, 8), hidden=16), ss.zoo.digits_cnn(channels=(4, 8), hidden=16)
    X = np.random.default_rng(0).normal(size=(32, 1, 8, 8)).astype(np.float32)
    r = ss.merge([a, b], "uniform", batchnorm="recalibrate", data=(X, np.arange(32) % 10), return_result=True)
    by = {x.layer: x for x in r.records}
    assert by["features.1.running_mean"].action == "recalibrated"
    assert by["features.1.num_batches_tracked"].action == "kept"
    assert by["features.0.weight"].action == "merged" and "uniform of 2 models" in by["features.0.weight"].reason


def test_greedy_soup_scores_are_ss_measure_scores():
    train = ss.datasets.load("digits", split="train", seed=0)
    val = ss.datasets.load("digits", split="val", seed=0)
    start = ss.zoo.train(ss.zoo.digits_mlp(hidden=(16,)), train, epochs=1, seed=0)
    members = [ss.zoo.train(copy.deepcopy(start), train, epochs=1, seed=s) for s in (1, 2)]
    r = ss.merge(members, "greedy_soup", data=val, return_result=True)
    info = r.summary["greedy_soup"]
    assert info["individual_scores"] == pytest.approx([ss.measure.score(m, val) for m in members])
    assert info["soup_score"] == pytest.approx(ss.measure.score(r.model, val))
    pair = ss.merge(members, "greedy_soup", data=(val.X, val.y), return_result=True)  # an (X, y) pair scores alike
    assert pair.summary["greedy_soup"]["individual_scores"] == pytest.approx(info["individual_scores"])
    assert r.records[0].reason.startswith("greedy soup: mean of models")
