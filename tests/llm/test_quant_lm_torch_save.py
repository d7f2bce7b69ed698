"""Torch-backend WeightOnly LMs: GPT-2's Conv1D projections are quantized, and a saved quantized LM
loads back with its integer layers (it used to load the float architecture with random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.llm import CausalLM

from .conftest import TEXT, make_hf_model

PROMPT = "Small models run fast on a CPU, and the lazy dog sleeps."


def _lm(family: str, seed: int) -> CausalLM:
    model, tok = make_hf_model(family, seed=seed)
    return CausalLM(model, tok, name=f"tiny-{family}")


def _int_layers(lm) -> list[str]:
    return [n for n, m in lm.named_modules() if type(m).__name__ == "WeightOnlyLinear"]


@pytest.mark.parametrize("family,bits,group", [("gpt2", 4, 32), ("qwen2", 8, 32), ("phi", 4, 32)])
def test_torch_weight_only_lm_saves_and_reloads_its_int_layers(tmp_path, family, bits, group):
    lm = _lm(family, seed=3)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    with torch.no_grad():
        q = ss.quantize(lm, ss.WeightOnly(bits=bits, group_size=group, backend="torch"), calibration=[TEXT] * 4)
    layers = _int_layers(q.model)
    assert layers, f"no projection of the {family} model was quantized"
    if family == "gpt2":  # every Conv1D projection (c_attn, c_proj, c_fc) became an int layer
        assert {n.rsplit(".", 1)[-1] for n in layers} == {"c_attn", "c_proj", "c_fc"}
        assert not any(type(m).__name__ == "Conv1D" for m in q.model.modules())
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())  # input unchanged
    _, lp_q = q.model.logprobs(PROMPT, max_tokens=32)
    _, lp_f = lm.logprobs(PROMPT, max_tokens=32)
    assert not np.allclose(lp_q, lp_f)  # the weights really changed
    ss.save(q.model, tmp_path / "q")
    back = ss.load(tmp_path / "q")
    assert type(back) is CausalLM and _int_layers(back) == layers
    _, lp_b = back.logprobs(PROMPT, max_tokens=32)
    np.testing.assert_allclose(lp_b, lp_q, atol=1e-5)
    assert back.generate(PROMPT, max_new_tokens=6) == q.model.generate(PROMPT, max_new_tokens=6)
