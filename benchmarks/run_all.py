"""Run every benchmark script (pass --quick for the 3-minute subsets), then refresh the README tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name.startswith("_") or script.name.endswith("_table.py") or script.name in ("run_all.py", "render_readme.py"):
            continue
        print(f"== {script.name} {' '.join(extra)}", flush=True)
        if subprocess.call([sys.executable, str(script), *extra]) != 0:
            failed.append(script.name)
    subprocess.call([sys.executable, str(HERE / "render_readme.py")])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
