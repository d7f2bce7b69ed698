"""`slimstack demo`'s LM part says plainly why it is skipped when llama.cpp is missing."""

from __future__ import annotations

import io

from rich.console import Console


def test_lm_demo_is_skipped_with_a_clear_line_without_llama_cpp(monkeypatch):
    from slimstack import demo
    from slimstack.quantize.backends.llamacpp import _lm

    import slimstack.quantize.backends.llamacpp as llamacpp

    missing = lambda: (False, "llama-cpp-python is not installed")  # noqa: E731
    monkeypatch.setattr(_lm, "llama_cpp_available", missing)
    monkeypatch.setattr(llamacpp, "llama_cpp_available", missing)  # the demo reads the package's public name
    buf = io.StringIO()
    assert demo.lm_demo(Console(file=buf, width=120)) is None
    assert "LM part skipped: llama-cpp-python is not installed" in buf.getvalue()
