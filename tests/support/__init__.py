"""Support code of the test tiers that run outside tools: a real Prometheus
(:mod:`tests.support.prometheus`) and the README's Prometheus recipe as a deployable app
(:mod:`tests.support.promapp`)."""

from __future__ import annotations

__all__: list[str] = []
