"""Write a transformers Llama-family causal LM as a GGUF file that llama.cpp runs.

Tensor names, the query/key row permutation and the metadata keys follow llama.cpp's
``convert_hf_to_gguf.py`` (``LlamaModel``); the tokenizer goes in as the "gpt2" BPE model
(tokens, token types, merges, special ids, chat template). Each weight is written either as float32
or as slimstack's own codes (:class:`QTensor`), packed by :func:`._grids.pack` into llama.cpp's block
layout, so the file holds exactly the values slimstack chose.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ....errors import ModelError
from ._grids import FORMATS, pack
from ._kquants import KGrid, pack_k

__all__ = ["QTensor", "write_gguf", "gguf_names", "LLAMA_TYPES"]

LLAMA_TYPES = ("llama", "mistral", "smollm3")  # model_type values whose weights map to llama.cpp's "llama"

_LAYER = {
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


@dataclasses.dataclass
class QTensor:
    """A weight rounded onto a llama.cpp grid: codes (rows, cols), effective scales and minima per block
    (32 inputs; a K-quant's sub-block), and for K-quants ``extra``: the integer sub-scales and the
    float16 super-block scales that the file stores (see :func:`._kquants.pack_k`)."""

    grid: str
    q: torch.Tensor
    d: torch.Tensor
    m: torch.Tensor | None = None
    extra: dict | None = None

    def dequantize(self) -> torch.Tensor:
        return FORMATS[self.grid].dequantize(self.q, self.d, self.m)

    def packed(self) -> np.ndarray:
        """The bytes llama.cpp reads, (rows, bytes per row)."""
        grid = FORMATS[self.grid]
        if isinstance(grid, KGrid):
            if self.extra is None:
                raise ModelError(f"a {self.grid} QTensor needs extra= (its super-block scales) to be written")
            return pack_k(grid, self.q, self.extra)
        return pack(grid, self.q, self.d, self.m)


def gguf_names(config: Any) -> dict[str, str]:
    """transformers parameter name -> GGUF tensor name, for every tensor llama.cpp reads."""
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if not getattr(config, "tie_word_embeddings", False):
        names["lm_head.weight"] = "output.weight"
    for i in range(config.num_hidden_layers):
        for hf, gg in _LAYER.items():
            names[f"model.layers.{i}.{hf}"] = f"blk.{i}.{gg}"
    return names


def _permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """transformers' rotate-half query/key rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf.permute)."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _check_arch(model: Any) -> Any:
    config = model.config
    mt = getattr(config, "model_type", None)
    if mt not in LLAMA_TYPES:
        raise ModelError(f"the GGUF writer handles Llama-family models (model_type in {LLAMA_TYPES}), got "
                         f"model_type={mt!r}; quantize it with backend='torch' instead")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(config, flag, False):
            raise ModelError(f"{type(model).__name__} has {flag}=True, which llama.cpp's llama graph does not "
                             "read; quantize it with backend='torch'")
    if getattr(config, "rope_scaling", None) not in (None, {}) and \
            (config.rope_scaling or {}).get("rope_type", "default") != "default":
        raise ModelError(f"rope_scaling={config.rope_scaling!r} is not written by slimstack's GGUF writer; "
                         "quantize it with backend='torch'")
    return config


def _tokenizer(w: Any, tok: Any, pre: str) -> None:
    import gguf

    vocab = tok.get_vocab()
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    for t, i in vocab.items():
        tokens[i] = t
    added = getattr(tok, "added_tokens_decoder", {}) or {}
    types = [gguf.TokenType.NORMAL] * n
    for i, at in added.items():
        if i < n:
            types[i] = gguf.TokenType.CONTROL if getattr(at, "special", False) else gguf.TokenType.USER_DEFINED
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise ModelError(f"the GGUF writer needs a fast (tokenizers) BPE tokenizer, got {type(tok).__name__}")
    model = json.loads(backend.to_str())["model"]
    if model.get("type") != "BPE":
        raise ModelError(f"the GGUF writer writes byte-level BPE tokenizers; this one is {model.get('type')!r}")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, add in (("bos_token_id", w.add_bos_token_id), ("eos_token_id", w.add_eos_token_id),
                     ("unk_token_id", w.add_unk_token_id), ("pad_token_id", w.add_pad_token_id)):
        value = getattr(tok, key, None)
        if value is not None:
            add(int(value))
    w.add_add_bos_token(bool(getattr(tok, "add_bos_token", False)))
    if getattr(tok, "chat_template", None):
        w.add_chat_template(tok.chat_template)


def write_gguf(model: Any, tokenizer: Any, path: str | Path, tensors: dict[str, QTensor] | None = None, *,
               pre: str = "smollm", name: str = "slimstack", record: dict | None = None) -> Path:
    """Write ``model`` to ``path``: ``tensors`` (transformers name -> :class:`QTensor`) packed, the rest float32.

    ``pre`` is llama.cpp's pre-tokenizer name (``tokenizer.ggml.pre``): "smollm" for SmolLM2, "gpt-2"
    for plain byte-level BPE. ``record`` (how slimstack chose each tensor) is stored as JSON under
    the ``slimstack.quantize`` key, which is how ``ss.load`` knows to run the file on llama.cpp.
    """
    import gguf

    config = _check_arch(model)
    tensors = tensors or {}
    names = gguf_names(config)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    unknown = sorted(set(tensors) - set(names))
    if unknown:
        raise ModelError(f"no GGUF tensor for {unknown[:3]}; quantizable names look like {next(iter(names))!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    n_head, n_kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or \
        config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    w.add_name(name)
    w.add_context_length(int(config.max_position_embeddings))
    w.add_embedding_length(int(config.hidden_size))
    w.add_block_count(int(config.num_hidden_layers))
    w.add_feed_forward_length(int(config.intermediate_size))
    w.add_head_count(int(n_head))
    w.add_head_count_kv(int(n_kv))
    w.add_rope_freq_base(float(getattr(config, "rope_theta", None) or
                               (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    w.add_vocab_size(int(config.vocab_size))
    w.add_rope_dimension_count(int(head_dim))
    w.add_key_length(int(head_dim))
    w.add_value_length(int(head_dim))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if tensors else gguf.LlamaFileType.ALL_F32)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _tokenizer(w, tokenizer, pre)
    w.add_string("slimstack.quantize", json.dumps(record or {}, default=str))
    for hf, gg in names.items():
        if hf not in state:
            raise ModelError(f"{type(model).__name__} has no {hf!r}; the GGUF writer expects Llama parameter names")
        qt = tensors.get(hf)
        if qt is None:
            data = state[hf].float().numpy()
            raw_type = None
        else:
            data = qt.packed()
            raw_type = gguf.GGMLQuantizationType[qt.grid]
        if gg.endswith(("attn_q.weight", "attn_k.weight")):
            data = _permute(data, n_head if gg.endswith("attn_q.weight") else n_kv)
        if raw_type is None:
            w.add_tensor(gg, np.ascontiguousarray(data))
        else:
            w.add_tensor(gg, np.ascontiguousarray(data), raw_dtype=raw_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
