"""Errors a user can cause: each is raised when the app is built, with one message naming the fix."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from asgi_ws_close import WebSocketCloseMiddleware


async def app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")  # pragma: no cover


def test_an_app_that_is_not_callable_names_add_middleware() -> None:
    with pytest.raises(
        TypeError, match=r"app must be an ASGI application \(a callable\), not 42 \(int\).*add_middleware"
    ):
        WebSocketCloseMiddleware(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["close_on_error", "reject_with_close_code", "count_messages"])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_flag_must_be_a_bool(option: str, value: object) -> None:
    # A truthy "yes" would silently turn the option on; "no" would too.
    with pytest.raises(TypeError, match=f"{option} must be True or False, not {value!r}"):
        WebSocketCloseMiddleware(app, **{option: value})


@pytest.mark.parametrize("option", ["close_on_error", "reject_with_close_code", "count_messages"])
def test_a_bool_flag_is_accepted(option: str) -> None:
    middleware = WebSocketCloseMiddleware(app, **{option: True})
    assert getattr(middleware, option) is True


def test_server_must_be_a_name() -> None:
    with pytest.raises(TypeError, match="server must be a server's name"):
        WebSocketCloseMiddleware(app, server=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"server must be one of .*'uvicorn-wsproto'.*not 'nope'"):
        WebSocketCloseMiddleware(app, server="nope")


def test_invalid_close_names_the_choices() -> None:
    with pytest.raises(ValueError, match="invalid_close must be one of 'pass', 'fix' or 'raise', not 'repair'"):
        WebSocketCloseMiddleware(app, invalid_close="repair")  # type: ignore[arg-type]


def test_a_hook_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match=r"on_close must be a callable taking \(context, scope\)"):
        WebSocketCloseMiddleware(app, on_close=[print, 42])  # type: ignore[list-item]


def test_starlette_reports_a_bad_option_when_it_builds_the_stack() -> None:
    starlette = Starlette()
    starlette.add_middleware(WebSocketCloseMiddleware, close_on_error="yes")
    with pytest.raises(TypeError, match="close_on_error must be True or False"), TestClient(starlette):
        pass  # pragma: no cover


def test_a_close_context_is_not_built_by_hand() -> None:
    from asgi_ws_close import CloseContext

    with pytest.raises(TypeError, match=r"made by WebSocketCloseMiddleware.*get_close_context.*capture_closes"):
        CloseContext()
