"""A recipe over a causal LM and text data: measured with perplexity (lower is better) and KLD."""

from __future__ import annotations

import slimstack as ss
from slimstack.recipe import run_recipe

from .conftest import TEXT, make_hf_model


def test_recipe_measures_a_causal_lm_on_text(tmp_path, monkeypatch):
    import slimstack.llm._measure as lm_measure

    monkeypatch.setattr(lm_measure, "DECODE_TOKENS", 4)
    monkeypatch.setattr(lm_measure, "PREFILL_TOKENS", 32)
    model, tok = make_hf_model("llama")
    ss.save(ss.llm.CausalLM(model, tok), tmp_path / "lm")
    (tmp_path / "notes.txt").write_text("\n\n".join(f"{TEXT[:120]} ({i})" for i in range(30)))
    recipe = {"name": "tiny-lm", "model": {"path": str(tmp_path / "lm")},
              "data": {"name": str(tmp_path / "notes.txt"), "window": 32},
              "measure": {"threads": 1, "runs": 1, "warmup": 0}, "steps": []}
    report = run_recipe(recipe, tmp_path / "out")
    row = report["rows"][0]
    assert row["quality_metric"] == "perplexity" and row["higher_is_better"] is False
    assert row["metrics"]["kld"] == 0.0 and row["metrics"]["top1_agreement"] == 1.0
    assert report["best"]["name"] == "original" and report["pareto_latency"] == ["original"]
    assert (tmp_path / "out" / "report.html").exists()
