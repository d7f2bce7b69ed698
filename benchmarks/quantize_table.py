"""Print the Markdown results table of ``benchmarks/quantize.py`` from its JSON (for docs/quantize.md and the README)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def table(payload: dict) -> str:
    from quantize import markdown

    return markdown(payload)


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text())))
