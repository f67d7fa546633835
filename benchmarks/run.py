"""``python benchmarks/run.py [--quick] [--only NAME]``: the same as ``python -m benchmarks``."""

from __future__ import annotations

import sys
from pathlib import Path


def _main() -> int:
    if not __package__:
        # Run as a script: make the repository root importable, as ``-m`` would.
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks._runner import main

    return main()


if __name__ == "__main__":
    raise SystemExit(_main())
