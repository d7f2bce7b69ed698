import numpy as np
import pytest
import torch

import slimstack as ss


def test_reference_models_train_to_good_accuracy(digits, digits_cnn, digits_mlp):
    for model in (digits_cnn, digits_mlp):
        with torch.no_grad():
            acc = (model(torch.as_tensor(digits["test"].X)).argmax(1).numpy() == digits["test"].y).mean()
        assert acc > 0.93


def test_training_is_deterministic(digits):
    small = digits["train"].head(200)
    a = ss.zoo.train(ss.zoo.digits_mlp(hidden=(16,)), small, epochs=2, seed=5)
    torch.manual_seed(123)  # global state must not matter: the seed decides
    b = ss.zoo.train(ss.zoo.digits_mlp(hidden=(16,)), small, epochs=2, seed=5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_unknown_architecture():
    with pytest.raises(ss.UnknownNameError, match=r"unknown architecture 'DigitsCN'.*Did you mean 'DigitsCNN'"):
        ss.zoo.build_architecture("DigitsCN", {})


@pytest.mark.slow
def test_minilm_scores_the_reference_spearman_through_measure(minilm):
    dev = ss.datasets.load("stsb", split="test")
    m = ss.measure(minilm, dev, batch_size=128, runs=2, warmup=1)
    assert m.quality_metric == "spearman"
    assert m.quality == pytest.approx(0.867, abs=0.002)
    assert m.params == pytest.approx(22.7e6, rel=0.01)
    assert m.kind == "torch-encoder"


@pytest.mark.slow
def test_minilm_encode_contract(minilm, tmp_path):
    texts = ["A man is playing a flute.", "A man plays the flute.", "A dog runs."]
    emb = minilm.encode(texts, batch_size=2)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
    ss.save(minilm, tmp_path / "enc")
    again = ss.load(tmp_path / "enc")
    np.testing.assert_allclose(again.encode(texts), emb, atol=1e-5)
