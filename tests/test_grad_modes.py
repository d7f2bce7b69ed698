"""Every verb works whatever autograd mode the caller is in, and leaves that mode as it was.

A natural place to call ``ss.prune`` is inside ``torch.no_grad()`` or ``torch.inference_mode()``;
Torch-Pruning traces with autograd, Taylor importance and recovery take gradients, QAT and
distillation train. The models here are the tests' own (a residual CNN with a projection shortcut, a
tiny BERT), not the zoo's.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest
import torch
from torch import nn

import slimstack as ss

torch.set_num_threads(1)  # the test machine is shared; one thread contends least

MODES = {
    "grad": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}


class ResCNN(nn.Module):
    """Two residual blocks (the second widens through a 1x1 projection) on 1x8x8 images."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                    nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width),
                                    nn.ReLU(), nn.Conv2d(2 * width, 2 * width, 3, padding=1))
        self.proj = nn.Conv2d(width, 2 * width, 1, stride=2)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block1(x))
        x = torch.relu(self.proj(x) + self.block2(x))
        return self.head(x.mean((2, 3)))


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}


def _same(model: nn.Module, before: dict[str, np.ndarray]) -> bool:
    now = model.state_dict()
    return set(now) == set(before) and all(np.array_equal(now[k].numpy(), v) for k, v in before.items())


@pytest.fixture(scope="module")
def digits():
    ds = ss.datasets.load("digits", split="train", seed=0)
    return ds.subset(slice(0, 128)), ss.datasets.load("digits", split="test", seed=0).subset(slice(0, 64))


@pytest.fixture(scope="module")
def rescnn(digits):
    torch.manual_seed(0)
    return ss.zoo.train(ResCNN(), digits[0], epochs=2, seed=0).eval()


@pytest.fixture(scope="module")
def bert():
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(str(ss.zoo.minilm_path()), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    return ss.zoo.SentenceEncoder(BertModel(cfg, add_pooling_layer=False).eval(), tok, max_length=24).eval()


@pytest.fixture(scope="module")
def sts():
    return ss.datasets.load("stsb", split="train").subset(slice(0, 32))


def _prune_cases():
    return {
        "structured-l2": lambda m, d, x: ss.prune(m, ss.StructuredPruning(ratio=0.5), example_inputs=x),
        "structured-taylor-global-recovery": lambda m, d, x: ss.prune(
            m, ss.StructuredPruning(ratio=0.4, importance="taylor", taylor_batches=2, global_pruning=True,
                                    recovery="finetune", recovery_epochs=1), data=d),
        "structured-tolerance": lambda m, d, x: ss.prune(
            m, ss.StructuredPruning(tolerance=0.05, sensitivity_ratios=(0.5,)), data=d, val=d),
        "magnitude-iterative": lambda m, d, x: ss.prune(m, ss.MagnitudePruning(sparsity=0.6, schedule="iterative",
                                                                             steps=2, recovery="finetune",
                                                                             recovery_epochs=1), data=d),
        "nm": lambda m, d, x: ss.prune(m, ss.NMPruning(n=2, m=4)),
    }


def _quantize_cases():
    return {
        "dynamic": lambda m, d: ss.quantize(m, ss.DynamicInt8(backend="torch")),
        "static": lambda m, d: ss.quantize(m, ss.StaticInt8(backend="torch", calibration_size=64), calibration=d),
        "weight-only": lambda m, d: ss.quantize(m, ss.WeightOnly(bits=8, group_size=32)),
        "qat": lambda m, d: ss.quantize(m, ss.QAT(epochs=1, batch_size=64), data=d),
        "fallback": lambda m, d: ss.quantize(m, ss.DynamicInt8(backend="torch"), tolerance=0.5, data=d),
    }


def _run_in(mode: str, fn):
    """Run ``fn`` inside ``mode``; check the caller's mode inside the block is unchanged afterwards."""
    with MODES[mode]():
        before = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        out = fn()
        assert (torch.is_grad_enabled(), torch.is_inference_mode_enabled()) == before
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    return out


def _predicts(model, ds) -> float:
    return ss.measure(model, ds, batch_size=64, threads=1, warmup=0, runs=1, cost=False).quality


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", list(_prune_cases()))
def test_prune_in_every_grad_mode(mode, case, rescnn, digits):
    train, test = digits
    before = _state(rescnn)
    with MODES[mode]():
        x = torch.as_tensor(train.X[:2])  # example inputs made in the caller's mode (inference tensors too)
    r = _run_in(mode, lambda: _prune_cases()[case](rescnn, train, x))
    assert _same(rescnn, before)
    assert r.model(torch.as_tensor(test.X[:4])).shape == (4, 10)
    assert any(rec.action == "pruned" for rec in r.record) or case == "structured-tolerance"
    assert all(p.requires_grad and not p.is_inference() for p in r.model.parameters())


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("importance", ["l2", "taylor"])
def test_encoder_prune_in_every_grad_mode(mode, importance, bert, sts):
    cfg = ss.StructuredPruning(ratio=0.5, head_ratio=0.25, importance=importance, taylor_batches=1)
    r = _run_in(mode, lambda: ss.prune(bert, cfg, data=sts))
    assert r.model.model.encoder.layer[0].intermediate.dense.out_features == 32
    assert r.model.encode(["a dog runs", "two cats"]).shape == (2, 32)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", list(_quantize_cases()))
def test_quantize_in_every_grad_mode(mode, case, rescnn, digits):
    train, test = digits
    before = _state(rescnn)
    q = _run_in(mode, lambda: _quantize_cases()[case](rescnn, train))
    assert _same(rescnn, before)
    assert q.model(torch.as_tensor(test.X[:4])).shape == (4, 10)
    assert _predicts(q.model, test) > _predicts(rescnn, test) - 0.2


@pytest.mark.parametrize("mode", list(MODES))
def test_distill_in_every_grad_mode(mode, rescnn, digits):
    train, test = digits
    torch.manual_seed(1)
    student = ResCNN(width=4)
    before = _state(student)
    d = _run_in(mode, lambda: ss.distill(rescnn, student, ss.DistillConfig(epochs=1, batch_size=64), train=train))
    assert _same(student, before)
    assert not _same(d.model, before)  # it trained
    assert np.isfinite(d.history[-1]["loss"])


@pytest.fixture(scope="module")
def siblings(rescnn, digits):
    """Two fine-tunes of ``rescnn`` (one more epoch each, different seeds): mergeable with it."""
    return [ss.zoo.train(copy.deepcopy(rescnn), digits[0], epochs=1, seed=s).eval() for s in (1, 2)]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("method", ["uniform", "greedy_soup", "ties"])
def test_merge_in_every_grad_mode(mode, method, rescnn, siblings, digits):
    test = digits[1]
    kw = {"data": test} if method == "greedy_soup" else {"base": rescnn} if method == "ties" else {}
    models = siblings if method == "ties" else [rescnn, *siblings]
    merged = _run_in(mode, lambda: ss.merge(models, method, **kw))
    assert isinstance(merged, ResCNN)
    assert merged(torch.as_tensor(test.X[:4])).shape == (4, 10)


@pytest.mark.parametrize("mode", list(MODES))
def test_measure_and_compare_in_every_grad_mode(mode, rescnn, digits):
    test = digits[1]
    m = _run_in(mode, lambda: ss.measure(rescnn, test, batch_size=32, threads=1, warmup=1, runs=2))
    assert 0.0 <= m.quality <= 1.0 and m.latency_ms > 0 and m.macs > 0
    c = _run_in(mode, lambda: ss.compare({"a": rescnn, "b": rescnn}, test, batch_size=32, threads=1, warmup=1, runs=2))
    assert c.measurements["a"].quality == pytest.approx(m.quality)


@pytest.mark.parametrize("mode", list(MODES))
def test_shrink_in_every_grad_mode(mode, bert):
    small = _run_in(mode, lambda: ss.zoo.shrink(bert, layers=2))
    assert len(small.model.encoder.layer) == 2
    assert all(not p.is_inference() for p in small.parameters())
    cnn = ss.zoo.digits_cnn(channels=(8, 16), hidden=16)
    assert _run_in(mode, lambda: ss.zoo.shrink(cnn, width=0.5)).classifier[3].in_features == 8
