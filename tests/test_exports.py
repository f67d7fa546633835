"""The public API: a small top-level namespace, close-code helpers in `asgi_ws_close.codes`,
the 0.1.0 names that moved still resolving with a warning that names their new home."""

from __future__ import annotations

import importlib
import inspect

import pytest

import asgi_ws_close
import asgi_ws_close.codes

PUBLIC = {
    "SCOPE_KEY",
    "Close",
    "CloseCode",
    "CloseContext",
    "CloseRecord",
    "ConnectionState",
    "InvalidClosePolicy",
    "MiddlewareNotInstalled",
    "OnClose",
    "Outcome",
    "WebSocketCloseError",
    "WebSocketCloseMiddleware",
    "current_close_context",
    "get_close_context",
}

CODES = {
    "CLOSE_CODE_EXPLANATIONS",
    "CODE_LABELS",
    "ELLIPSIS",
    "MAX_REASON_BYTES",
    "MAX_REASON_LENGTH",
    "OK_CLOSE_CODES",
    "Close",
    "CloseCode",
    "close_violation",
    "code_label",
    "is_valid_close_code",
    "sanitize_reason",
    "truncate_reason",
}

#: 0.1.0's top-level names that left it, and where they are now.
MOVED = {
    **{name: "asgi_ws_close.codes" for name in CODES - PUBLIC},
    "CloseTracker": "asgi_ws_close._tracker",
    "SERVERS": "asgi_ws_close._servers",
    "ServerQuirks": "asgi_ws_close._servers",
    "detect_server": "asgi_ws_close._servers",
}


def test_the_top_level_api_is_small() -> None:
    assert set(asgi_ws_close.__all__) == PUBLIC | {"__version__"}
    assert len(asgi_ws_close.__all__) == len(set(asgi_ws_close.__all__))
    assert len(PUBLIC) <= 16  # besides __version__
    for name in asgi_ws_close.__all__:
        assert hasattr(asgi_ws_close, name), name
    # Nothing private or internal in the public namespace.
    assert not {name for name in asgi_ws_close.__all__ if name.startswith("_") and name != "__version__"}


def test_codes_is_a_public_submodule() -> None:
    assert set(asgi_ws_close.codes.__all__) == CODES
    for name in CODES:
        assert getattr(asgi_ws_close.codes, name) is not None, name
    assert asgi_ws_close.codes.Close is asgi_ws_close.Close


@pytest.mark.parametrize("name", sorted(MOVED))
def test_a_moved_name_warns_and_names_its_new_home(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"asgi_ws_close.{name} is deprecated: import it from {MOVED[name]}"):
        value = getattr(asgi_ws_close, name)
    assert value is getattr(importlib.import_module(MOVED[name]), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        asgi_ws_close.nope  # noqa: B018


def test_the_docstrings_of_the_public_api_are_markdown() -> None:
    # mkdocstrings renders Markdown; Sphinx roles would show as raw text in help() and the docs.
    for module in (asgi_ws_close, asgi_ws_close.codes):
        for name in module.__all__:
            doc = inspect.getdoc(getattr(module, name)) or ""
            assert ":class:" not in doc and ":func:" not in doc and ":data:" not in doc, name


def test_version() -> None:
    assert isinstance(asgi_ws_close.__version__, str)
    assert asgi_ws_close.__version__.count(".") == 2


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("asgi_ws_close").joinpath("py.typed").is_file()
