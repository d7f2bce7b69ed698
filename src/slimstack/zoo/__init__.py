"""Reference models: digits MLP/CNN/ResNet trained in seconds, and all-MiniLM-L6-v2 offline."""

from ._batching import length_batches, pad_ids, token_ids
from ._encoder import SentenceEncoder, load_hf_encoder, minilm, minilm_path
from ._encoder_io import SentenceEncoderFormat  # the zoo registers its own save format with slimstack.io
from ._models import (
    DigitsCNN,
    DigitsMLP,
    DigitsResNet,
    architectures,
    build_architecture,
    digits_cnn,
    digits_mlp,
    digits_resnet,
    register_architecture,
)
from ._shrink import shrink, spread_layers
from ._train import train


def smollm2(*, cache: bool = True):
    """SmolLM2-135M-Instruct as a float32 :class:`slimstack.llm.CausalLM` (see :func:`slimstack.llm.smollm2`)."""
    from ..llm import smollm2 as _smollm2

    return _smollm2(cache=cache)


__all__ = [
    "DigitsCNN", "DigitsMLP", "DigitsResNet", "SentenceEncoder", "SentenceEncoderFormat", "architectures", "build_architecture",
    "digits_cnn", "digits_mlp", "digits_resnet", "length_batches", "load_hf_encoder", "minilm", "minilm_path", "pad_ids",
    "register_architecture", "shrink", "smollm2", "spread_layers", "token_ids", "train",
]
