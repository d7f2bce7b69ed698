import numpy as np
import pytest
import torch
from torch import nn

import slimstack as ss
from slimstack.prune._eval import quality


def _x(digits, n=8):
    return torch.as_tensor(digits[1].X[:n])


def test_cnn_channels_really_removed_outputs_kept(cnn, digits):
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    r = ss.prune(cnn, ss.StructuredPruning(ratio=0.5), example_inputs=digits[0].X[:2])
    m = r.model
    assert (m.features[0].out_channels, m.features[3].out_channels, m.classifier[1].out_features) == (8, 16, 16)
    assert m.features[1].num_features == 8 and m.classifier[1].in_features == 16 * 16
    assert m(_x(digits)).shape == (8, 10)
    assert r.layer("classifier.3").action == "skipped" and "output layer" in r.layer("classifier.3").reason
    assert r.summary["params"] < 0.35 * r.summary["params_before"]
    assert all(torch.equal(v, before[k]) for k, v in cnn.state_dict().items())


def test_resnet_residual_groups_stay_consistent(resnet, digits):
    r = ss.prune(resnet, ss.StructuredPruning(ratio=0.5, round_to=4), example_inputs=digits[0].X[:2])
    m = r.model
    widths = {m.stem[0].out_channels, m.blocks[0].conv2.out_channels, m.blocks[1].conv2.out_channels, m.fc.in_features}
    assert widths == {8}  # the residual stream shrinks as one group
    assert m.blocks[0].conv1.out_channels == 8 and m(_x(digits)).shape == (8, 10)


def test_round_to_layer_ratios_and_ignore(cnn, digits):
    cfg = ss.StructuredPruning(ratio=0.5, round_to=8, layer_ratios={"features.3": 0.25}, ignore=("classifier.1",))
    r = ss.prune(cnn, cfg, example_inputs=digits[0].X[:2])
    m = r.model
    assert m.features[3].out_channels == 24 and m.features[0].out_channels == 8
    assert m.classifier[1].out_features == 32 and r.layer("classifier.1").reason == "listed in ignore"
    assert all(c % 8 == 0 for c in (m.features[0].out_channels, m.features[3].out_channels))


def test_removing_every_channel_is_a_recorded_skip(digits):
    tiny = ss.zoo.digits_cnn(channels=(4, 8), hidden=8)
    r = ss.prune(tiny, ss.StructuredPruning(ratio=0.5, round_to=8), example_inputs=digits[0].X[:2])
    rec = r.layer("features.0")
    assert rec.action == "skipped" and "would remove every channel" in rec.reason
    assert r.model.features[0].out_channels == 4


def test_importance_criteria_rank_differently_and_random_is_seeded(cnn, digits):
    outs = {}
    for imp in ("l1", "l2", "taylor", "random"):
        r = ss.prune(cnn, ss.StructuredPruning(ratio=0.5, importance=imp, seed=1), data=digits[0])
        outs[imp] = quality(r.model, digits[1])
    again = ss.prune(cnn, ss.StructuredPruning(ratio=0.5, importance="random", seed=1), data=digits[0])
    assert quality(again.model, digits[1]) == outs["random"]
    assert max(outs["l1"], outs["l2"], outs["taylor"]) > outs["random"]


def test_taylor_without_data_says_what_to_pass(cnn, digits):
    with pytest.raises(ss.ConfigError, match="importance='taylor'.*needs labelled data"):
        ss.prune(cnn, ss.StructuredPruning(importance="taylor"), example_inputs=digits[0].X[:2])


@pytest.mark.parametrize("method", ["finetune", "distill"])
def test_recovery_gets_within_a_few_points_and_leaves_teacher_mode(cnn, digits, method):
    base = quality(cnn, digits[1])
    cnn.train()
    try:
        r = ss.prune(cnn, ss.StructuredPruning(ratio=0.5, recovery=method, recovery_epochs=2), data=digits[0])
        assert cnn.training
    finally:
        cnn.eval()
    assert quality(r.model, digits[1]) >= base - 0.05
    assert r.summary["recovery"]["method"] == method


def test_wrong_example_shape_names_module_and_fix(cnn):
    with pytest.raises(ss.ShapeError, match=r"shape \(2, 64\) in module 'features.0'.*Pass example_inputs"):
        ss.prune(cnn, ss.StructuredPruning(), example_inputs=np.zeros((2, 64), dtype=np.float32))


def test_missing_example_inputs(cnn):
    with pytest.raises(ss.ShapeError, match="pass example_inputs=x"):
        ss.prune(cnn, ss.StructuredPruning())


def test_bad_ignore_and_layer_ratio_names(cnn, digits):
    with pytest.raises(ss.UnknownNameError, match="ignore: 'feature.3' is not a module.*Did you mean 'features.3'"):
        ss.prune(cnn, ss.StructuredPruning(ignore=("feature.3",)), example_inputs=digits[0].X[:2])
    with pytest.raises(ss.UnknownNameError, match="layer_ratios: 'features0' is not a module.*Did you mean 'features.0'"):
        ss.prune(cnn, ss.StructuredPruning(layer_ratios={"features0": 0.2}), example_inputs=digits[0].X[:2])


class _NoAutograd(nn.Module):
    """A custom op that runs for inference but has no autograd support (so it cannot be traced)."""

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            raise TypeError("custom op without autograd support")
        return x


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.custom = _NoAutograd()
        self.head = nn.Linear(4 * 64, 10)

    def forward(self, x):
        return self.head(self.custom(self.conv(x)).flatten(1))


def test_untraceable_model_names_the_module_and_suggests_ignore(digits):
    with pytest.raises(ss.ModelError, match=r"cannot trace _Untraceable: module 'custom' \(_NoAutograd\).*ignore=\[\.\.\.\]"):
        ss.prune(_Untraceable(), ss.StructuredPruning(), example_inputs=digits[0].X[:2])


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")
def test_save_load_without_pickle_and_onnx_export(cnn, resnet, digits, tmp_path):
    x = _x(digits)
    for name, model in (("cnn", cnn), ("resnet", resnet)):
        r = ss.prune(model, ss.StructuredPruning(ratio=0.5), example_inputs=digits[0].X[:2])
        ss.save(r.model, tmp_path / name)
        assert not list((tmp_path / name).glob("*.pt")) and (tmp_path / name / "model.safetensors").exists()
        back = ss.load(tmp_path / name)
        assert torch.allclose(back(x), r.model(x), atol=1e-6)
        torch.onnx.export(r.model, (x,), str(tmp_path / f"{name}.onnx"), input_names=["x"], dynamo=False,
                          dynamic_axes={"x": {0: "n"}})
        onnx_model = ss.load(tmp_path / f"{name}.onnx")
        assert np.allclose(onnx_model(x.numpy()), r.model(x).detach().numpy(), atol=1e-4)


def test_sensitivity_tolerance_lowers_sensitive_layers(cnn, digits):
    # absolute_tolerance: the drop in accuracy points (what tolerance= meant before it became relative)
    train, test = digits
    r = ss.prune(cnn, ss.StructuredPruning(ratio=0.75, absolute_tolerance=0.02, sensitivity_ratios=(0.25, 0.5)),
                 data=train, val=test)
    sens = r.summary["sensitivity"]
    assert set(sens["curves"]) == {"features.0", "features.3", "classifier.1"}
    assert sens["met"] == (sens["baseline"] - quality(r.model, test) <= 0.02)
    assert any(v < 0.75 for v in r.summary["ratios"].values())
    assert quality(r.model, test) >= sens["baseline"] - 0.02 or not sens["met"]


def test_tolerance_is_relative_to_the_baseline(cnn, digits):
    train, test = digits
    r = ss.prune(cnn, ss.StructuredPruning(ratio=0.75, tolerance=0.02, sensitivity_ratios=(0.25, 0.5)),
                 train=train, val=test)
    sens = r.summary["sensitivity"]
    assert sens["tolerance_kind"] == "relative"
    assert sens["allowed_drop"] == pytest.approx(0.02 * sens["baseline"])
    assert sens["baseline"] == pytest.approx(quality(cnn, test)) and 0.9 < sens["baseline"] < 1
    assert sens["met"] == (quality(r.model, test) >= sens["baseline"] * (1 - 0.02))
    for unit, curve in sens["curves"].items():  # each unit got the largest trial ratio within the allowed drop
        ok = [float(k) for k, q in curve.items() if sens["baseline"] - q <= sens["allowed_drop"] and float(k) <= 0.75]
        assert sens["tries"][0]["ratios"][unit] == max(ok, default=0.0)
    a = ss.prune(cnn, ss.StructuredPruning(ratio=0.75, absolute_tolerance=0.02, sensitivity_ratios=(0.25, 0.5)),
                 train=train, val=test).summary["sensitivity"]
    assert a["tolerance_kind"] == "absolute" and a["allowed_drop"] == 0.02 and a["baseline"] == sens["baseline"]
