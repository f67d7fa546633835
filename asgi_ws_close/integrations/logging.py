"""One structured log line per WebSocket close, on the `asgi_ws_close` logger.

Use the ready hook:

```python
from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.integrations.logging import log_close

app = WebSocketCloseMiddleware(app, on_close=log_close)
```

or build one with other levels or another logger with `LogCloseHook`. Each line is a
human sentence, and the record's fields travel in `extra` under one key, `EXTRA_KEY`
(`record.ws_close`), so that JSON formatters (python-json-logger, structlog's
`ProcessorFormatter`, ECS and Datadog formatters) emit them as one nested object.

Every string that a peer or the app controls (reasons, the path, exception messages) is
passed through `sanitize_reason`, in the message and in
`extra` alike: a formatter that prints `extra` as it is cannot be tricked either.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from .._codes import explain
from .._record import _CLEANLINESS, CloseContext, CloseRecord
from .._sanitize import MAX_REASON_LENGTH, sanitize_reason
from .._tracker import ConnectionState
from .._types import Scope

__all__ = ["EXTRA_KEY", "LOGGER_NAME", "LogCloseHook", "close_log_fields", "log_close"]

#: The logger the ready hook writes to (the one the middleware reports hook errors on).
LOGGER_NAME = "asgi_ws_close"

#: The `extra` key, hence the `logging.LogRecord` attribute, holding the fields.
EXTRA_KEY = "ws_close"


def close_log_fields(
    context: CloseContext | CloseRecord,
    scope: Scope | None = None,
    *,
    max_length: int = MAX_REASON_LENGTH,
) -> dict[str, Any]:
    """Return the fields of a close as a JSON-serialisable dict, every text sanitised.

    The keys are those of `CloseContext.to_dict()`,
    plus `path` (percent-encoded, as in uvicorn's access log) and `client`
    (`"host:port"`) when `scope` is given. Every string in it (`reason`, the reasons
    in `received`, `sent` and `requested`, `error.message`, `path`, and the rest)
    went through `sanitize_reason` with `max_length`. Handy for
    structlog and friends: `logger.info("websocket closed", **close_log_fields(context, scope))`.

    Args:
        context: The connection's context (or a snapshot of it).
        scope: The connection's ASGI scope, for the path and the client's address.
        max_length: The cap on every sanitised string, in characters.

    Returns:
        The fields, a fresh dict.
    """
    record = context.snapshot() if isinstance(context, CloseContext) else context
    fields: dict[str, Any] = {}
    if scope is not None:
        # Percent-encoded as in uvicorn's access log: no spaces, so it cannot pose as more
        # of the line.
        fields["path"] = quote(str(scope.get("path", "")), errors="backslashreplace")
        fields["client"] = _client_of(scope)
    # The error is rendered here, not by to_dict(): an exception's __str__ may raise.
    fields.update(replace(record, error=None).to_dict())
    fields["error"] = _error_fields(record.error)
    # Every string, whatever field it is in (today's or a future one), is sanitised.
    sanitised: dict[str, Any] = _sanitised(fields, max_length)
    return sanitised


class LogCloseHook:
    """An `on_close` hook that logs one line per connection.

    Clean closes log at `clean_level`; everything else (a lost transport, 1006, a rejected
    handshake, a protocol error, an app that raised) at `abnormal_level`. A line reads:

    ```text
    WebSocket /ws closed by client after 12.034 s, clean: 4001 (private use) bye
    WebSocket /ws closed by app after 0.002 s, not clean, app raised KeyError: 1006 (abnormal closure [internal])
    WebSocket /ws rejected by the app (HTTP 403) after 0.001 s, not clean: 1006 (abnormal closure [internal])
    ```

    The path is percent-encoded (as in uvicorn's access log) and the reason comes last, so
    nothing a peer writes can pass for another field. An app error is named by its type
    (its sanitised message is in `extra`), without a traceback: the middleware re-raises
    the exception unchanged, and the server logs it with its traceback already.

    Args:
        logger: The logger, or its name.
        clean_level: The level of clean closes.
        abnormal_level: The level of the other closes.
        max_length: The cap on every sanitised string, in characters.

    Raises:
        ValueError: `max_length` is less than 1.
    """

    def __init__(
        self,
        logger: logging.Logger | str = LOGGER_NAME,
        *,
        clean_level: int = logging.INFO,
        abnormal_level: int = logging.WARNING,
        max_length: int = MAX_REASON_LENGTH,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, not {max_length}")
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.clean_level = clean_level
        self.abnormal_level = abnormal_level
        self.max_length = max_length

    def __call__(self, context: CloseContext, scope: Scope) -> None:
        # Nothing to build for a level nobody listens to. Levels are ordered: when the higher of
        # the two is not enabled, neither is (asked first, it spares reading the record).
        clean_level, abnormal_level, logger = self.clean_level, self.abnormal_level, self.logger
        if not logger.isEnabledFor(clean_level if clean_level > abnormal_level else abnormal_level):
            return
        level = clean_level if context.clean and context.error is None else abnormal_level
        if not logger.isEnabledFor(level):
            return
        fields = close_log_fields(context, scope, max_length=self.max_length)
        # A constant template, so that aggregators (Sentry, Loki patterns) group the lines.
        self.logger.log(level, "WebSocket %s %s", fields["path"], _summary(fields), extra={EXTRA_KEY: fields})

    def __repr__(self) -> str:
        clean = logging.getLevelName(self.clean_level)
        abnormal = logging.getLevelName(self.abnormal_level)
        return f"<LogCloseHook logger={self.logger.name!r} clean={clean} abnormal={abnormal}>"


#: The ready hook: `LogCloseHook()`, INFO and WARNING on the `asgi_ws_close` logger.
log_close = LogCloseHook()


def _summary(fields: Mapping[str, Any]) -> str:
    # Everything here is already sanitised (or an int, float or bool of our own).
    duration = fields["duration"]
    took = "" if duration is None else f" after {duration:.3f} s"
    if fields["state"] == ConnectionState.REJECTED.name:
        head = f"rejected by the app (HTTP {fields['http_status']}){took}"
    elif fields["state"] == ConnectionState.CLOSED.name:
        head = f"closed by {fields['initiator'] or 'nobody'}{took}"
    else:  # a hook called by hand on a live connection
        return str(fields["state"]).lower()
    head = f"{head}, {_CLEANLINESS[fields['clean']]}"
    error = fields["error"]
    if error is not None:
        # The type only: its message may quote the peer, and only the reason may come last.
        head = f"{head}, app raised {error['type']}"
    code = fields["code"]
    if code is None:  # the server did not report it (context.unknown)
        return f"{head}: code unknown"
    # Not str(Close(...)): that sanitises the reason, which is sanitised already.
    status = f"{code} ({explain(code)})"
    reason = fields["reason"]
    return f"{head}: {status} {reason}" if reason else f"{head}: {status}"


def _sanitised(value: Any, max_length: int) -> Any:
    if isinstance(value, str):
        return sanitize_reason(value, max_length)
    if isinstance(value, dict):
        return {key: _sanitised(item, max_length) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitised(item, max_length) for item in value]
    return value


def _error_fields(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    try:
        message = str(error)
    except Exception:  # an exception whose __str__ raises must not cost us the log line
        message = "<unprintable>"
    return {"type": type(error).__qualname__, "message": message}


def _client_of(scope: Scope) -> str | None:
    # ASGI: "client" is [host, port], or None (unix sockets, some test clients).
    client: Any = scope.get("client")
    try:
        host, port = client
    except (TypeError, ValueError):
        return None
    return f"{host}:{port}"
