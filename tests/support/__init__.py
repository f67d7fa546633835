"""Support code of the test tiers that run outside tools: a real Prometheus
(`tests.support.prometheus`) and the Prometheus recipe of docs/observability.md as a deployable app
(`tests.support.promapp`)."""

from __future__ import annotations

__all__: list[str] = []
