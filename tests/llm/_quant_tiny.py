"""A tiny random Llama with a small byte-level BPE tokenizer, wrapped with the CausalLM methods the quantizer reads."""

from __future__ import annotations

import numpy as np
import torch

TEXT = ("slimstack makes trained models slimmer and measures them on the CPU they run on. "
        "A quantized language model keeps generate, chat, logprobs and perplexity. "
        "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun. ") * 6


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator([TEXT], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def tiny_llama(vocab: int, seed: int = 0, layers: int = 2, hidden: int = 64, ffn: int = 192):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, rms_norm_eps=1e-5)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the init's 0.02, so rounding errors show in the logits
        for p in m.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.15)
    return m


class TinyLM:
    """Just enough of CausalLM for the quantizer: .model, .tokenizer, generate, logprobs."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    @torch.no_grad()
    def logprobs(self, text: str, max_tokens: int = 1024):
        ids = self.tokenizer(text)["input_ids"][:max_tokens]
        lp = torch.log_softmax(self.model(input_ids=torch.tensor([ids])).logits[0].float(), -1).numpy()
        return np.asarray(ids), lp

    def generate(self, prompt: str, max_new_tokens: int = 16, ignore_eos: bool = False) -> str:
        ids = torch.tensor([self.tokenizer(prompt)["input_ids"]])
        out = self.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
        return self.tokenizer.decode(out[0, ids.shape[1]:])
