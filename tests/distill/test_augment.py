"""Input augmentation for distillation: pure, seeded batch transforms and the teacher on the fly."""

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.distill._augment import augment_batch
from slimstack.errors import ConfigError, DataError

from .conftest import accuracy


def _batch():
    return torch.as_tensor(ss.datasets.load("digits", split="train", seed=0).X[:32])


@pytest.mark.parametrize("kind", ["shift", "noise", "mixup"])
def test_augmented_batch_keeps_shape_differs_and_is_seeded(kind):
    x = _batch()
    x0 = x.clone()
    a = augment_batch(x, kind, torch.Generator().manual_seed(3), scale=0.1)
    b = augment_batch(x, kind, torch.Generator().manual_seed(3), scale=0.1)
    c = augment_batch(x, kind, torch.Generator().manual_seed(4), scale=0.1)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(x, x0)  # the input batch is not modified
    assert torch.equal(a, b)  # same seed, same batch
    assert not torch.equal(a, c)
    changed = (a != x).flatten(1).any(1).float().mean()
    assert changed > 0.5  # most rows are perturbed


def test_shift_moves_pixels_by_one_with_zero_padding():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3).repeat(200, 1, 1, 1)
    out = augment_batch(x, "shift", torch.Generator().manual_seed(0))
    seen = set()
    for img in out[:, 0]:
        # Every output is the input moved by (dy, dx) in {-1, 0, 1}^2, zeros where it slid in.
        match = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if torch.equal(img, _shifted(x[0, 0], dy, dx))]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == 9  # all nine offsets occur


def _shifted(img, dy, dx):
    out = torch.zeros_like(img)
    h, w = img.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_shift_on_tabular_rows_is_refused():
    with pytest.raises(DataError, match="augment='noise'"):
        augment_batch(torch.zeros(4, 6), "shift", torch.Generator().manual_seed(0))


def test_noise_scales_with_feature_std():
    x = torch.zeros(4000, 2)
    out = augment_batch(x, "noise", torch.Generator().manual_seed(0), scale=0.5, feature_std=torch.tensor([1.0, 4.0]))
    assert out.std(0).numpy() == pytest.approx([0.5, 2.0], rel=0.05)


def test_augment_with_cache_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="augment='shift' with cache_dir"):
        ss.DistillConfig(augment="shift", cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="augment='blur' is not one of"):
        ss.DistillConfig(augment="blur")
    with pytest.raises(ConfigError, match="augment_scale"):
        ss.DistillConfig(augment="noise", augment_scale=0.0)


def test_augment_needs_a_teacher_that_can_run(digits_splits, mlp_teacher, fast_config):
    tr = digits_splits["train"]
    outputs = mlp_teacher(torch.as_tensor(tr.X)).detach().numpy()
    with pytest.raises(ConfigError, match="precomputed outputs"):
        ss.distill(outputs, ss.zoo.digits_mlp(hidden=(16,)), fast_config.replace(augment="shift"), train=tr)


def test_ensemble_distillation_with_shift_is_deterministic_and_learns(digits_splits, mlp_teacher, fast_config):
    tr, te = digits_splits["train"], digits_splits["test"]
    torch.manual_seed(1)
    other = ss.zoo.train(ss.zoo.digits_mlp(hidden=(32,)), tr, epochs=5, seed=1)
    cfg = fast_config.replace(augment="shift", alpha=0.9, temperature=3.0, epochs=3)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(ss.distill([mlp_teacher, other], ss.zoo.digits_mlp(hidden=(24,)), cfg, train=tr))
    a, b = (dict(r.model.state_dict()) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].record["augment"] == "shift" and "augmented batch" in runs[0].record["teacher_live"]
    assert accuracy(runs[0].model, te) > 0.6  # an untrained student scores about 0.1
    # Without augmentation (cached-style targets on the plain rows) the run differs.
    torch.manual_seed(0)
    plain = ss.distill([mlp_teacher, other], ss.zoo.digits_mlp(hidden=(24,)), cfg.replace(augment="none"), train=tr)
    assert not all(torch.equal(a[k], plain.model.state_dict()[k]) for k in a)


def test_noise_augment_on_tabular_regression_runs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 5)).astype(np.float32)
    teacher = torch.nn.Linear(5, 3)
    d = ss.distill(teacher, torch.nn.Linear(5, 3), ss.DistillConfig(loss="mse", augment="noise", epochs=20, lr=5e-2, progress=False,
                                                                     threads=1), train=X)
    w_t, w_s = teacher.weight.detach(), d.model.weight.detach()
    assert torch.allclose(w_t, w_s, atol=0.1)
