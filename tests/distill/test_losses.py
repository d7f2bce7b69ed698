"""The loss functions are pure: checked against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from slimstack.distill import losses as L


def test_kd_loss_is_zero_for_identical_logits_and_positive_otherwise():
    s = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    assert L.kd_loss(s, s, 4.0).item() == pytest.approx(0.0, abs=1e-7)
    assert L.kd_loss(s, s.flip(-1), 4.0).item() > 0.01


def test_kd_loss_matches_hand_computed_kl_scaled_by_t_squared():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 2.0]])
    T = 2.0
    p = F.softmax(t / T, -1)[0]
    q = F.softmax(s / T, -1)[0]
    kl = float((p * (p / q).log()).sum())
    assert L.kd_loss(s, t, T).item() == pytest.approx(kl * T * T, rel=1e-5)


def test_hinton_loss_mixes_kd_and_cross_entropy_by_alpha():
    torch.manual_seed(0)
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    parts = L.hinton_loss(s, t, y, 3.0, 0.25)
    expected = 0.25 * L.kd_loss(s, t, 3.0) + 0.75 * F.cross_entropy(s, y)
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"loss", "kd", "ce"}
    # Without labels only the distillation term is left.
    assert set(L.hinton_loss(s, t, None, 3.0, 0.25)) == {"loss", "kd"}


def test_embedding_losses():
    a = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    b = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=-1)
    cos = (1 - math.cos(math.pi / 4)) / 2
    assert L.cosine_loss(a, b).item() == pytest.approx(cos, rel=1e-5)
    both = L.embedding_loss(a, b, "cosine+mse")
    assert both["loss"].item() == pytest.approx(cos + F.mse_loss(a, b).item() * 2, rel=1e-5)
    assert set(L.embedding_loss(a, b, "mse")) == {"loss", "mse"}


def test_feature_loss_uses_projection_and_ignores_padding():
    s = torch.zeros(1, 3, 2)
    t = torch.ones(1, 3, 4)
    proj = torch.nn.Linear(2, 4)
    torch.nn.init.zeros_(proj.weight)
    torch.nn.init.ones_(proj.bias)  # maps everything onto the teacher exactly
    assert L.feature_loss(s, t, "mse", proj).item() == pytest.approx(0.0)
    t2 = t.clone()
    t2[0, 2] = 100.0  # a padding position: masked out, so it must not count
    mask = torch.tensor([[1, 1, 0]])
    assert L.feature_loss(s, t2, "mse", proj, mask).item() == pytest.approx(0.0)
    assert L.feature_loss(s, t2, "mse", proj).item() > 1000


def test_feature_loss_on_conv_maps_projects_channels():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    proj = torch.nn.Linear(3, 5)
    out = L.feature_loss(s, t, "cosine", proj)
    assert out.shape == () and 0.0 < out.item() < 2.0
