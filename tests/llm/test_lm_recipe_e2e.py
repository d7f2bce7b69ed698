"""A tiny-LM recipe end to end: shrink + distill, then 4-bit weights; the report puts KLD beside decode speed and size."""

from __future__ import annotations

import json

import slimstack as ss
from slimstack.recipe import load_recipe, run_recipe

from .conftest import TEXT, make_hf_model


def test_tiny_lm_recipe_distills_quantizes_and_reports(tmp_path, monkeypatch):
    import slimstack.llm._measure as lm_measure

    monkeypatch.setattr(lm_measure, "DECODE_TOKENS", 4)
    monkeypatch.setattr(lm_measure, "PREFILL_TOKENS", 32)
    model, tok = make_hf_model("llama")
    ss.save(ss.llm.CausalLM(model, tok), tmp_path / "lm")
    (tmp_path / "notes.txt").write_text("\n\n".join(f"{TEXT[:120]} ({i})" for i in range(30)))
    recipe = {"name": "tiny-lm", "model": {"path": str(tmp_path / "lm")},
              "data": {"name": str(tmp_path / "notes.txt"), "window": 32}, "objective": "size",
              "measure": {"threads": 1, "runs": 1, "warmup": 0},
              "steps": [{"distill": {"student": {"shrink": {"layers": 2}}, "epochs": 2, "batch_size": 4, "lr": 1e-3,
                                     "top_k": 32, "temperature": 1.0, "progress": False}},
                        {"quantize": {"method": "WeightOnly", "bits": 4, "group_size": 32, "backend": "torch"}}]}
    load_recipe(recipe)
    report = run_recipe(recipe, tmp_path / "out")
    names = [r["name"] for r in report["rows"]]
    assert names == ["original", "01-distill", "02-quantize"]
    lm = {r["name"]: r for r in report["lm"]}
    assert lm["original"]["kld"] == 0.0
    assert lm["01-distill"]["kld"] > 0 and lm["02-quantize"]["kld"] > 0
    assert all(r["decode_tokens_per_s"] > 0 and r["perplexity"] > 1 for r in lm.values())
    assert lm["02-quantize"]["size_bytes"] < lm["01-distill"]["size_bytes"] < lm["original"]["size_bytes"]
    step = report["steps"][0]["record"]
    assert step["teacher"] == "original" and len(step["history"]) == 3  # epoch 0 (the start, scored on val) and 2 epochs
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["lm"] == report["lm"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'id="lm-quality-speed"' in page and "perplexity against decode speed" in page
    back = ss.load(tmp_path / "out" / "artifacts" / "01-distill")
    assert back.perplexity(TEXT[:200]) > 1
