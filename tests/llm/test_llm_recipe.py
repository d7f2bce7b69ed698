"""A recipe over a causal LM and text data: measured with perplexity (lower is better) and KLD."""

from __future__ import annotations

import slimstack as ss
from slimstack.recipe import run_recipe

from .conftest import tiny_lm_recipe


def test_recipe_measures_a_causal_lm_on_text(tmp_path, monkeypatch):
    recipe = tiny_lm_recipe(tmp_path, monkeypatch, "tiny-lm", [])
    report = run_recipe(recipe, tmp_path / "out")
    row = report["rows"][0]
    assert row["quality_metric"] == "perplexity" and row["higher_is_better"] is False
    assert row["metrics"]["kld"] == 0.0 and row["metrics"]["top1_agreement"] == 1.0
    assert report["best"]["name"] == "original" and report["pareto_latency"] == ["original"]
    assert (tmp_path / "out" / "report.html").exists()
