from slimstack.report import pareto_front, pick_best, render_html


def _rows():
    return [
        {"name": "fp32", "quality": 0.90, "latency_ms": 10.0, "size_bytes": 100, "throughput": 10},
        {"name": "int8", "quality": 0.895, "latency_ms": 4.0, "size_bytes": 30, "throughput": 25},
        {"name": "bad", "quality": 0.80, "latency_ms": 5.0, "size_bytes": 50, "throughput": 20},
        {"name": "tiny", "quality": 0.70, "latency_ms": 1.0, "size_bytes": 10, "throughput": 100},
    ]


def test_pareto_front():
    assert pareto_front(_rows(), "latency_ms") == ["fp32", "int8", "tiny"]
    assert pareto_front(_rows(), "throughput") == ["fp32", "int8", "tiny"]


def test_pick_best_within_tolerance_and_when_nothing_meets_it():
    assert pick_best(_rows(), "fp32", 0.01, "latency") == {"name": "int8", "met_tolerance": True,
                                                           "quality_floor": 0.90 * 0.99}
    rows = [r for r in _rows() if r["name"] != "int8"]
    rows[0]["quality"] = None
    best = pick_best([{**r, "quality": r["quality"] or 0.5} for r in rows], "bad", 0.001, "size")
    assert best["name"] == "bad" and best["met_tolerance"] is True


def test_html_is_rendered_from_json_only():
    rows = [{**r, "quality_metric": "accuracy", "batch_size": 8, "threads": 2, "runs": 3, "speedup": 1.0,
             "size_ratio": 1.0, "params": 10, "nonzero_params": 10, "macs": None, "peak_memory_bytes": None}
            for r in _rows()]
    report = {"title": "t", "created": "now", "objective": "latency", "tolerance": 0.01, "baseline": "fp32",
              "rows": rows, "steps": [], "pareto_latency": ["fp32", "int8", "tiny"], "pareto_size": [],
              "best": {"name": "int8", "met_tolerance": True}}
    html = render_html(report)
    assert html.count("<svg") == 2 and html.count('class="point"') == 8
    assert 'class="pareto"' in html and '<tr class="best"><td>int8</td>' in html
