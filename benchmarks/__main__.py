"""``python -m benchmarks [--quick] [--only NAME]``: run the benchmarks, print the summary."""

from __future__ import annotations

from benchmarks._runner import main

raise SystemExit(main())
