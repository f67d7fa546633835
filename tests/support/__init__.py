"""Support code shared by the test tiers: one module per tool or deployment (see each module)."""

from __future__ import annotations

__all__: list[str] = []
