"""Reference models: digits MLP/CNN/ResNet trained in seconds, and all-MiniLM-L6-v2 offline."""

from ._encoder import SentenceEncoder, load_hf_encoder, minilm, minilm_path
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

__all__ = [
    "DigitsCNN", "DigitsMLP", "DigitsResNet", "SentenceEncoder", "architectures", "build_architecture",
    "digits_cnn", "digits_mlp", "digits_resnet", "load_hf_encoder", "minilm", "minilm_path",
    "register_architecture", "shrink", "spread_layers", "train",
]
