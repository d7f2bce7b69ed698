"""ss.zoo.shrink: layer-reduced transformers and width-reduced MLPs/CNNs, initialised from the teacher."""

import pytest
import torch
from torch import nn

import slimstack as ss
from slimstack.zoo import spread_layers

from .conftest import state_equal


def test_spread_layers_keeps_first_and_last():
    assert spread_layers(6, 3) == [0, 3, 5]
    assert spread_layers(12, 4) == [0, 4, 7, 11]
    assert spread_layers(6, 6) == [0, 1, 2, 3, 4, 5]
    assert spread_layers(6, 1) == [5]


def test_layer_reduced_encoder_runs_exactly_the_chosen_teacher_layers(tiny_encoder):
    before = {k: v.clone() for k, v in tiny_encoder.state_dict().items()}
    student = ss.zoo.shrink(tiny_encoder, layers=[0, 3, 5])
    assert student.model.config.num_hidden_layers == 3 and student.model.config.shrunk_from_layers == [0, 3, 5]
    assert tiny_encoder.model.config.num_hidden_layers == 6 and len(tiny_encoder.model.encoder.layer) == 6
    assert all(torch.equal(before[k], v) for k, v in tiny_encoder.state_dict().items())

    batch = tiny_encoder.tokenize(["a cat sat", "a dog ran"])  # same length: no padding to mask
    bert = tiny_encoder.model
    with torch.no_grad():
        # By hand: embeddings, then teacher layers 0, 3 and 5 only.
        h = bert.embeddings(input_ids=batch["input_ids"])
        for i in (0, 3, 5):
            h = bert.encoder.layer[i](h, None)
        expected = tiny_encoder.pool(h, batch["attention_mask"])
        got = student(**batch)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # Its own copy of the weights: training the student does not touch the teacher.
    with torch.no_grad():
        student.model.encoder.layer[0].output.dense.weight.add_(1.0)
    assert torch.equal(before["model.encoder.layer.0.output.dense.weight"],
                       tiny_encoder.model.encoder.layer[0].output.dense.weight)
    assert ss.zoo.shrink(tiny_encoder, layers=3).model.config.shrunk_from_layers == [0, 3, 5]
    assert ss.zoo.shrink(tiny_encoder.model, layers=2).config.num_hidden_layers == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": 7}, r"layers=7 must be between 1 and the model's 6 layers"),
        ({"layers": [0, 6]}, r"holds \[6\], outside the model's layers 0..5"),
        ({"layers": [3, 1]}, r"must be increasing and without repeats, e.g. \[1, 3\]"),
        ({"width": 0.5}, r"takes layers=, not width=0.5"),
        ({}, r"needs layers=, e.g. layers=3"),
    ],
)
def test_bad_layer_choices(tiny_encoder, kwargs, match):
    with pytest.raises(ss.ConfigError, match=match):
        ss.zoo.shrink(tiny_encoder, **kwargs)


def test_mlp_keeps_the_important_units_exactly():
    torch.manual_seed(0)
    mlp = ss.zoo.digits_mlp(hidden=(16, 8)).eval()
    with torch.no_grad():  # units 8..15 of the first hidden layer feed nothing: dropping them is exact
        mlp.net[3].weight[:, 8:] = 0
    x = torch.rand(5, 1, 8, 8)
    small = ss.zoo.shrink(mlp, width=(8, 8)).eval()
    assert small.get_config()["hidden"] == [8, 8]
    torch.testing.assert_close(small(x), mlp(x))
    assert ss.zoo.shrink(mlp, width=0.5).get_config()["hidden"] == [8, 4]


def test_cnn_width_reduction_keeps_live_channels_and_cuts_parameters():
    torch.manual_seed(0)
    cnn = ss.zoo.digits_cnn().eval()
    with torch.no_grad():  # dead channels/units: zero BN scale and shift, zero outgoing weights
        for bn, dead in ((cnn.features[1], slice(8, None)), (cnn.features[4], slice(16, None))):
            bn.weight[dead] = 0
            bn.bias[dead] = 0
        cnn.classifier[3].weight[:, 32:] = 0
    x = torch.rand(4, 1, 8, 8)
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    small = ss.zoo.shrink(cnn, width=(8, 16, 32)).eval()
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    torch.testing.assert_close(small(x), cnn(x), atol=1e-5, rtol=1e-5)
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    quarter = ss.zoo.shrink(ss.zoo.digits_cnn(), width=0.25)
    assert quarter.get_config() == {"channels": [8, 16], "hidden": 32, "num_classes": 10}
    assert params(quarter) < 0.1 * params(cnn)
    with pytest.raises(ss.ConfigError, match=r"width=\[8, 99, 32\] must give 3 widths \(channels1, channels2, hidden\)"):
        ss.zoo.shrink(cnn, width=(8, 99, 32))
    with pytest.raises(ss.ConfigError, match=r"width=1.5 is the share of units to keep"):
        ss.zoo.shrink(cnn, width=1.5)


def test_unknown_models_are_refused_with_the_alternative():
    with pytest.raises(ss.ModelError, match="does not know how to shrink a Linear.*Pass your own smaller student"):
        ss.zoo.shrink(nn.Linear(3, 3), width=0.5)


def test_shrunk_digits_models_save_and_load(tmp_path):
    small = ss.zoo.shrink(ss.zoo.digits_cnn(), width=0.25)
    ss.save(small, tmp_path / "m")
    back = ss.load(tmp_path / "m")
    assert state_equal(small, back)
