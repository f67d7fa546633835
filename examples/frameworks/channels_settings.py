"""Minimal Django settings for channels_app.py: Channels consumers need no database."""

from __future__ import annotations

SECRET_KEY = "example only, not a secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
ASGI_APPLICATION = "channels_app.application"
