"""llama.cpp backend for causal LMs: slimstack's own GGUF writer, GPTQ rounding and ``LlamaCppLM``."""

from ._lm import LlamaCppLM, llama_cpp_available
from ._writer import QTensor, write_gguf

__all__ = ["LlamaCppLM", "QTensor", "llama_cpp_available", "write_gguf"]
