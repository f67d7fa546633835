"""Support code of the test tiers: everything under ``tests/`` that is not a test module.

* :mod:`tests.support.process`: the one server-process runner (free port, readiness, output,
  stop by PID) that every tier uses;
* :mod:`tests.support.servers`: the server matrix's servers (uvicorn x3, hypercorn, daphne,
  granian), launched as their users launch them, and the records their apps write;
* apps run by those servers: :mod:`~tests.support.serverapp`, :mod:`~tests.support.policyapp`,
  :mod:`~tests.support.reliabilityapp`, :mod:`~tests.support.obsapp`,
  :mod:`~tests.support.uvicorn_spec25` (uvicorn announcing ASGI spec 2.5) and the framework
  apps of :mod:`tests.support.frameworkapps`;
* clients: :mod:`~tests.support.rawclient` (RFC 6455 by hand), :mod:`~tests.support.h2client`
  (RFC 8441 over h2c), :mod:`~tests.support.browser_support` (the demo under Chromium);
* in-process pieces: :mod:`~tests.support.asgi` (a scripted server, echo apps) and
  :mod:`~tests.support.fuzz_tracker` (the strategies, also ``python -m tests.support.fuzz_tracker``);
* a real Prometheus (:mod:`tests.support.prometheus`) and the README's Prometheus recipe as a
  deployable app (:mod:`tests.support.promapp`).

Shared fixtures live in ``tests/conftest.py``.
"""

from __future__ import annotations

__all__: list[str] = []
