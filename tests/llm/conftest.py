"""Tiny random causal LMs (Llama, GPT-2, Qwen2, Mistral, Phi) with a byte-level BPE tokenizer trained here."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEXT = (
    "The quick brown fox jumps over the lazy dog. A language model predicts the next token from the ones "
    "before it. Small models run fast on a CPU, and quantized ones run faster still. "
) * 4
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def make_tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TEXT], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_config(family: str, vocab: int, **kw):
    import transformers as tf

    common = dict(vocab_size=vocab, eos_token_id=0, pad_token_id=0, bos_token_id=0)
    if family == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, **common)
    elif family == "llama":
        cfg = tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True, **common)
    elif family == "qwen2":
        cfg = tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, **common)
    elif family == "mistral":
        cfg = tf.MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, max_position_embeddings=128, **common)
    elif family == "phi":
        cfg = tf.PhiConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           max_position_embeddings=128, **common)
    else:
        raise ValueError(family)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def make_hf_model(family: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(family, len(tok)), dtype=torch.float32).eval()
    return model, tok


def save_hf(tmp_path, family: str, seed: int = 0):
    model, tok = make_hf_model(family, seed)
    folder = tmp_path / family
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder, model


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture()
def tiny_llama():
    from slimstack.llm import CausalLM

    model, tok = make_hf_model("llama")
    return CausalLM(model, tok, name="tiny-llama")


def tiny_lm_recipe(tmp_path, monkeypatch, name: str, steps: list) -> dict:
    """A recipe over a saved tiny Llama and a notes.txt of TEXT, measured quickly (4 decode, 32 prefill tokens)."""
    import slimstack as ss
    import slimstack.llm._measure as lm_measure

    monkeypatch.setattr(lm_measure, "DECODE_TOKENS", 4)
    monkeypatch.setattr(lm_measure, "PREFILL_TOKENS", 32)
    model, tok = make_hf_model("llama")
    ss.save(ss.llm.CausalLM(model, tok), tmp_path / "lm")
    (tmp_path / "notes.txt").write_text("\n\n".join(f"{TEXT[:120]} ({i})" for i in range(30)))
    return {"name": name, "model": {"path": str(tmp_path / "lm")},
            "data": {"name": str(tmp_path / "notes.txt"), "window": 32},
            "measure": {"threads": 1, "runs": 1, "warmup": 0}, "steps": steps}


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread (two threads on a busy 2-core machine spin-wait)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
