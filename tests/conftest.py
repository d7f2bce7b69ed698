import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import slimstack as ss  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits():
    return {s: ss.datasets.load("digits", split=s, seed=0) for s in ("train", "val", "test")}


@pytest.fixture(scope="session")
def digits_cnn(digits):
    return ss.zoo.train(ss.zoo.digits_cnn(), digits["train"], epochs=8, seed=0)


@pytest.fixture(scope="session")
def digits_mlp(digits):
    return ss.zoo.train(ss.zoo.digits_mlp(), digits["train"], epochs=30, seed=0)


@pytest.fixture(scope="session")
def minilm():
    return ss.zoo.minilm()
