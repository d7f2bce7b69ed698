"""ss.zoo.shrink(lm, layers=k): decoder layers dropped, the rest copied, the input untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import slimstack as ss
from slimstack.llm import CausalLM

from .conftest import TEXT, make_hf_model


@pytest.mark.parametrize("family, path", [("llama", "model.layers"), ("gpt2", "transformer.h"),
                                          ("qwen2", "model.layers")])
def test_shrink_drops_layers_and_keeps_the_rest(tmp_path, family, path):
    model, tok = make_hf_model(family)
    lm = CausalLM(model, tok)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = len(model.get_submodule(path))
    small = ss.zoo.shrink(lm, layers=[0, n - 1] if n > 2 else [n - 1])
    keep = small.shrink_record["kept_layers"]
    assert len(small.model.get_submodule(path)) == len(keep) < n
    torch.testing.assert_close(small.model.get_submodule(path)[-1].state_dict(),
                               model.get_submodule(path)[n - 1].state_dict())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input unchanged
    # generation with the KV cache works on the renumbered layers, and the copy saves and loads
    assert len(small.generate_ids("The quick", max_new_tokens=4, ignore_eos=True)) == 4
    back = ss.load(ss.save(small, tmp_path / "s"))
    ids = small.tokenize(TEXT[:60])
    np.testing.assert_allclose(back.logprobs(ids)[1], small.logprobs(ids)[1], atol=1e-6)


def test_shrink_bad_layers(tiny_llama):
    with pytest.raises(ss.ConfigError, match="layers=5 must be between 1 and 3"):
        ss.zoo.shrink(tiny_llama, layers=5)
    with pytest.raises(ss.ConfigError, match="must name decoder layers 0..2"):
        ss.zoo.shrink(tiny_llama, layers=[0, 7])
