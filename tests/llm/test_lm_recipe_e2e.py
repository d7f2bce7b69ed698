"""A tiny-LM recipe end to end: shrink + distill, then 4-bit weights; the report puts KLD beside decode speed and size."""

from __future__ import annotations

import json
from pathlib import Path

import slimstack as ss
from slimstack.recipe import load_recipe, run_recipe

from .conftest import TEXT, tiny_lm_recipe


def test_tiny_lm_recipe_distills_quantizes_and_reports(tmp_path, monkeypatch):
    recipe = tiny_lm_recipe(tmp_path, monkeypatch, "tiny-lm", [
        {"distill": {"student": {"shrink": {"layers": 2}}, "epochs": 2, "batch_size": 4, "lr": 1e-3,
                     "top_k": 32, "temperature": 1.0, "progress": False}},
        {"quantize": {"method": "WeightOnly", "bits": 4, "group_size": 32, "backend": "torch"}}])
    recipe["objective"] = "size"
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


def test_tiny_lm_recipe_prunes_with_recovery_then_quantizes(tmp_path, monkeypatch):
    """A prune step on an LM gets the train split as calibration text (and as recovery text)."""
    from slimstack.recipe import validate_recipe

    recipe = tiny_lm_recipe(tmp_path, monkeypatch, "tiny-lm-prune", [
        {"prune": {"method": "LayerDrop", "layers": 1, "calibration_windows": 4, "calibration_tokens": 32,
                   "recovery": "distill", "recovery_params": "near_cut", "recovery_steps": 3, "recovery_batch": 2,
                   "recovery_lr": 1e-3}},
        {"quantize": {"method": "WeightOnly", "bits": 4, "group_size": 32, "backend": "torch"}}])
    report = run_recipe(recipe, tmp_path / "out")
    summary = report["steps"][0]["record"]["summary"]
    assert summary["layers"] == 2 and summary["recovery"]["steps"] == 3
    assert summary["recovery"]["text"] == "train=" and summary["recovery"]["params"] == "near_cut"
    assert [r["name"] for r in report["rows"]] == ["original", "01-prune", "02-quantize"]
    shipped = Path(__file__).resolve().parents[2] / "examples" / "smollm2_fast.yaml"
    assert [next(iter(s)) for s in validate_recipe(shipped).steps] == ["prune", "quantize"]  # the shipped one parses
