"""No verb changes the caller's model (weights, BatchNorm statistics, train/eval flag) or resets the
caller's global random streams (random, numpy, torch)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import slimstack as ss


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine is shared; one thread contends least
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def data():
    ds = ss.datasets.load("digits", split="train", seed=0)
    return ds.subset(slice(0, 160))


def _cnn(seed=0):
    return ss.zoo.digits_cnn(channels=(4, 8), hidden=16, seed=seed).train()  # BatchNorm2d, train mode


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()]


def _assert_unchanged(model, snap):
    state, modes = snap
    now = model.state_dict()
    assert list(now) == list(state)
    for k, v in state.items():
        assert torch.equal(now[k], v), f"{k} changed"
    assert [m.training for m in model.modules()] == modes, "the train/eval flag changed"


Q = ss.quantize
VERBS = {
    "prune_structured": lambda m, m2, d: ss.prune(m, ss.StructuredPruning(ratio=0.5), example_inputs=d.X[:4]),
    "prune_structured_finetune": lambda m, m2, d: ss.prune(
        m, ss.StructuredPruning(ratio=0.5, recovery="finetune", recovery_epochs=1), example_inputs=d.X[:4], data=d),
    "prune_magnitude_distill": lambda m, m2, d: ss.prune(
        m, ss.MagnitudePruning(sparsity=0.5, recovery="distill", recovery_epochs=1), data=d),
    "prune_nm": lambda m, m2, d: ss.prune(m, ss.NMPruning(n=2, m=4)),
    "quantize_dynamic_torch": lambda m, m2, d: Q(m, ss.DynamicInt8(backend="torch"), calibration=d.X[:32]),
    "quantize_dynamic_ort": lambda m, m2, d: Q(m, ss.DynamicInt8(backend="onnxruntime"), calibration=d.X[:32]),
    "quantize_dynamic_auto_fallback": lambda m, m2, d: Q(m, ss.DynamicInt8(backend="torch"), data=d,
                                                         tolerance=0.5),
    "quantize_static_torch": lambda m, m2, d: Q(m, ss.StaticInt8(backend="torch"), calibration=d.X[:32]),
    "quantize_static_ort": lambda m, m2, d: Q(m, ss.StaticInt8(backend="onnxruntime"), calibration=d.X[:32],
                                              data=d),
    "quantize_weight_only": lambda m, m2, d: Q(m, ss.WeightOnly(bits=8, group_size=32), calibration=d.X[:32]),
    "quantize_qat": lambda m, m2, d: Q(m, ss.QAT(epochs=1), data=d, calibration=d.X[:32]),
    "distill": lambda m, m2, d: ss.distill(m, m2, ss.DistillConfig(epochs=1, progress=False), train=d),
    "merge_uniform": lambda m, m2, d: ss.merge([m, m2], method="uniform"),
    "merge_greedy_soup": lambda m, m2, d: ss.merge([m, m2], method="greedy_soup", data=d),
    "measure": lambda m, m2, d: ss.measure(m, d, runs=1, warmup=0),
    "compare": lambda m, m2, d: ss.compare({"a": m, "b": m2}, d, runs=1, warmup=0),
    "zoo_shrink": lambda m, m2, d: ss.zoo.shrink(m, width=0.5),
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_verb_leaves_a_train_mode_model_unchanged(verb, data):
    m, m2 = _cnn(0), _cnn(1)
    snaps = _snapshot(m), _snapshot(m2)
    VERBS[verb](m, m2, data)
    _assert_unchanged(m, snaps[0])
    _assert_unchanged(m2, snaps[1])
    assert m.training and m2.training


def test_zoo_train_trains_in_place_but_keeps_nothing_else(data):
    """ss.zoo.train documents that it trains its argument; it must not touch the random streams."""
    _check_streams(lambda: ss.zoo.train(_cnn(), data, epochs=1, seed=3))


RNG_VERBS = {
    "quantize_static": lambda d: Q(_cnn(), ss.StaticInt8(backend="torch"), calibration=d.X[:32]),
    "quantize_qat": lambda d: Q(_cnn(), ss.QAT(epochs=1), data=d),
    "distill": lambda d: ss.distill(_cnn(0), _cnn(1), ss.DistillConfig(epochs=1, progress=False), train=d),
    "prune_recovery": lambda d: ss.prune(_cnn(), ss.StructuredPruning(ratio=0.5, recovery="finetune",
                                                                      recovery_epochs=1),
                                         example_inputs=d.X[:4], data=d),
    "zoo_train": lambda d: ss.zoo.train(_cnn(), d, epochs=1, seed=5),
}


def _check_streams(call):
    """After ``call()`` the global streams continue exactly where the caller left them."""
    random.seed(1234)
    np.random.seed(1234)
    torch.manual_seed(1234)
    random.random(), np.random.rand(), torch.rand(1)  # the caller is mid-stream
    state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    expected = random.random(), np.random.rand(3), torch.rand(3)
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.random.set_rng_state(state[2])
    call()
    got = random.random(), np.random.rand(3), torch.rand(3)
    assert got[0] == expected[0], "python's random stream was reset"
    np.testing.assert_array_equal(got[1], expected[1], err_msg="numpy's global stream was reset")
    torch.testing.assert_close(got[2], expected[2], rtol=0, atol=0, msg="torch's global stream was reset")


@pytest.mark.parametrize("verb", sorted(RNG_VERBS))
def test_verb_keeps_the_callers_random_streams(verb, data):
    _check_streams(lambda: RNG_VERBS[verb](data))


def test_seeded_verbs_stay_deterministic(data):
    """Restoring the caller's streams must not cost the verbs their own determinism."""
    a = Q(_cnn(), ss.QAT(epochs=1), data=data).model
    torch.manual_seed(99)  # a different caller stream
    b = Q(_cnn(), ss.QAT(epochs=1), data=data).model
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, w), k
