"""The README's ten-line example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_ten_line_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    first = blocks[0]
    assert len([line for line in first.splitlines() if line.strip()]) <= 12
    monkeypatch.chdir(tmp_path)
    exec(compile(first, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "accuracy" in out and "speedup" in out
    assert (tmp_path / "out" / "cnn" / "slimstack.json").exists()
