"""Print the Markdown results tables of ``benchmarks/hierarchical.py`` from its JSON (docs and README)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def table(payload: dict) -> str:
    from hierarchical import markdown, repeats_markdown

    out = markdown(payload["rows"])
    if any("repeats" in b for b in payload.get("cascade", {}).values()):
        out += "\n\nCascades, mean over random train/val/test splits:\n\n" + repeats_markdown(payload)
    return out


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text())))
