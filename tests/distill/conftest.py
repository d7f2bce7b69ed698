import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import slimstack as ss  # noqa: E402

torch.set_num_threads(1)  # tiny models: a second thread only adds contention


@pytest.fixture(scope="session")
def digits_splits():
    return {s: ss.datasets.load("digits", split=s, seed=0) for s in ("train", "val", "test")}


@pytest.fixture(scope="session")
def mlp_teacher(digits_splits):
    """A digits MLP trained for a few seconds (about 95% test accuracy)."""
    return ss.zoo.train(ss.zoo.digits_mlp(hidden=(64, 32)), digits_splits["train"], epochs=15, seed=0)


@pytest.fixture(scope="session")
def tiny_encoder():
    from transformers import BertConfig, BertModel

    from slimstack.zoo import SentenceEncoder

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=32)

    class Tok:  # characters as tokens: enough to drive a tiny encoder
        def __call__(self, texts, padding=True, truncation=True, max_length=16, return_tensors="pt"):
            ids = [[1] + [2 + (ord(c) % 50) for c in t][: max_length - 1] for t in texts]
            n = max(map(len, ids))
            return {"input_ids": torch.tensor([i + [0] * (n - len(i)) for i in ids]),
                    "attention_mask": torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i in ids])}

        def __len__(self):
            return 60

    return SentenceEncoder(BertModel(cfg).eval(), Tok(), max_length=16).eval()


def accuracy(model, ds) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(torch.as_tensor(ds.X)).argmax(-1).numpy() == ds.y).mean())


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def fast_config():
    return ss.DistillConfig(epochs=3, batch_size=64, lr=1e-2, progress=False, seed=0, threads=1)


__all__ = ["accuracy", "state_equal", "np"]
