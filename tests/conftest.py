"""Fixtures shared by the test tiers.

* ``framework_server``: a framework's app (:data:`~tests.support.frameworkapps.FRAMEWORK_APPS`)
  under uvicorn for the whole module, chosen by indirect parametrisation
  (``@pytest.mark.parametrize("framework_server", ["fastapi"], indirect=True)``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.frameworkapps import FRAMEWORK_APPS
from tests.support.frameworkapps.server import Server, run_uvicorn, uvicorn_command


@pytest.fixture(scope="module")
def framework_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The app of framework ``request.param`` under uvicorn (websockets-sansio)."""
    with run_uvicorn(uvicorn_command(FRAMEWORK_APPS[request.param])) as server:
        yield server
