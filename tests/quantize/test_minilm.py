"""The real all-MiniLM-L6-v2 through the ONNX Runtime path (marked slow: ~20 s on 2 idle cores)."""

from __future__ import annotations

import numpy as np
import pytest

import slimstack as ss
from slimstack.measure._metrics import sts_metrics

pytestmark = pytest.mark.slow


def test_minilm_dynamic_int8_onnxruntime_keeps_quality_and_input():
    enc = ss.zoo.minilm()
    dev = ss.datasets.load("stsb", split="test")
    pairs, gold = dev.pairs[:100], dev.scores[:100]
    texts = [s for p in pairs for s in p]
    ref = enc.encode(texts)
    r = ss.quantize(enc, ss.DynamicInt8(backend="onnxruntime"))
    np.testing.assert_array_equal(enc.encode(texts), ref)  # exporting did not change the caller's encoder
    emb = r.model.encode(texts)
    assert float((emb * ref).sum(1).mean()) > 0.99
    assert sts_metrics(emb, gold)["spearman"] >= sts_metrics(ref, gold)["spearman"] - 0.01
    assert r.record.fallback_met is None and len(r.record.quantized) >= 20
