"""Causal language models: :class:`CausalLM`, ``ss.zoo.smollm2()``, and their save/load formats."""

from ._causal_lm import CausalLM
from ._hf_folders import HFImageClassifier, HFTextClassifier, folder_kind, load_hf_folder
from . import _measure  # noqa: F401  (registers the LM adapter and task "lm" with slimstack.measure)
from ._measure import compare_lm
from ._io import CausalLMFormat, GGUFFormat, is_causal_lm_config, load_hf_causal_lm
from ._io import _causal_lm_classes as causal_lm_classes
from ._shrink import decoder_layers, shrink_lm
from ._teacher_text import teacher_text
from ._zoo import _quiet_transformers as quiet_transformers
from ._zoo import cache_dir, load_gguf, smollm2, smollm2_gguf_path

__all__ = ["CausalLM", "CausalLMFormat", "causal_lm_classes", "compare_lm", "decoder_layers", "quiet_transformers", "GGUFFormat", "HFImageClassifier", "HFTextClassifier", "folder_kind",
           "load_hf_folder", "cache_dir", "is_causal_lm_config", "load_gguf",
           "load_hf_causal_lm", "shrink_lm", "smollm2", "smollm2_gguf_path", "teacher_text"]
