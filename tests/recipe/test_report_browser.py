"""The report opens in a real browser: headless Chromium renders it; the DOM and a screenshot are checked."""

import shutil
import struct
import subprocess

import pytest

from slimstack.report import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make test installs it)")


def _report():
    rows = []
    for i, (name, q, lat, size) in enumerate([("original", 0.98, 9.0, 600_000), ("01-prune", 0.975, 4.0, 200_000),
                                              ("02-quantize", 0.972, 2.0, 60_000)]):
        rows.append({"name": name, "quality": q, "quality_metric": "accuracy", "latency_ms": lat, "size_bytes": size,
                     "speedup": 9.0 / lat, "size_ratio": size / 600_000, "params": 1000 - i, "nonzero_params": 900,
                     "macs": 5000, "peak_memory_bytes": 1000, "batch_size": 256, "threads": 2, "runs": 20})
    steps = [{"index": 1, "kind": "prune", "method": "StructuredPruning", "seconds": 1.0,
              "record": {"sensitivity": {"features.0": 0.01, "features.3": 0.04, "classifier.1": 0.002}}},
             {"index": 2, "kind": "cascade", "method": "Cascade", "seconds": 1.0,
              "record": {"curve": {"cost": [1.0, 2.0, 3.0], "accuracy": [0.9, 0.95, 0.97]}}}]
    return {"title": "slimstack report: browser test", "created": "now", "objective": "latency", "tolerance": 0.01,
            "baseline": "original", "rows": rows, "steps": steps, "pareto_latency": ["original", "01-prune", "02-quantize"],
            "pareto_size": ["original", "02-quantize"], "best": {"name": "02-quantize", "met_tolerance": True}}


def test_report_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(_report()))
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p1'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<svg") == 4  # latency and size Pareto plots, sensitivity bars, cascade curve
    assert dom.count('class="point"') == 6 and 'class="pareto"' in dom and 'class="bar"' in dom
    assert '<tr class="best"><td>02-quantize</td>' in dom and 'id="steps"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p2'}", f"--screenshot={shot}",
                    "--window-size=1280,1800", page.as_uri()], capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1800)
    assert len(data) > 30_000  # a blank page compresses to a few KB; tables and charts do not
