"""The minimal Django settings that Channels consumers need (no database, no channel layer)."""

from __future__ import annotations

SECRET_KEY = "asgi-ws-close tests only, not a secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
ASGI_APPLICATION = "tests.support.frameworkapps.channels_app.application"
# Django's logging setup is a dictConfig() that closes every handler in the process, pytest's
# included: the tests' process keeps its own.
LOGGING_CONFIG = None
