"""The public API is what the submodules' __all__ say, and nothing else."""

from __future__ import annotations

import importlib

import asgi_ws_close

SUBMODULES = ["_codes", "_context", "_middleware", "_record", "_sanitize", "_servers", "_tracker", "exceptions"]


def test_all_is_the_union_of_the_submodules() -> None:
    combined = {"__version__"}
    for name in SUBMODULES:
        combined.update(importlib.import_module(f"asgi_ws_close.{name}").__all__)
    assert set(asgi_ws_close.__all__) == combined
    assert len(asgi_ws_close.__all__) == len(set(asgi_ws_close.__all__))


def test_every_name_in_all_exists() -> None:
    for name in asgi_ws_close.__all__:
        assert hasattr(asgi_ws_close, name), name


def test_version() -> None:
    assert isinstance(asgi_ws_close.__version__, str)
    assert asgi_ws_close.__version__.count(".") == 2


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("asgi_ws_close").joinpath("py.typed").is_file()
