"""Sentry: how each WebSocket connection ended, on the connection's Sentry scope.

Install with `pip install "asgi-ws-close[sentry]"` (sentry-sdk 2.0 or later), then:

```python
import sentry_sdk
from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.integrations.sentry import sentry_close

sentry_sdk.init(dsn="...")  # its Starlette and FastAPI integrations turn on by themselves
app.add_middleware(WebSocketCloseMiddleware, on_close=sentry_close)
```

Once the connection has ended, the hook puts on the connection's isolation scope (the one
Sentry's ASGI middleware forks for each request and WebSocket):

* a `websocket_close` context: `outcome`, `state`, `initiator`, `code`, `code_explanation`,
  `reason`, `clean`, `http_status`, `http_version`, `duration`, `server`, `unknown`
  (`close_sentry_fields()`), every string sanitised with `sanitize_reason()`;
* a `websocket.close.outcome` tag (the name of the OpenTelemetry attribute), to search and
  group by;
* for an abnormal ending (not clean, or an outcome among `dropped`, `app_error` and the
  `server_*` ones), a breadcrumb: category `websocket`, level `warning`, and the sanitised
  one-line summary of the logging integration as its message.

The middleware runs its `on_close` hooks after the app returned or raised and before the
app's exception goes further out; Sentry's middleware, outside ours (Starlette's and
FastAPI's integrations wrap the whole app), captures the exception after that. So the error
event of a handler that raised carries the context, the tag and the breadcrumb; so does any
event captured later in that scope. Events captured while the connection was still open
(a log line at ERROR in the handler, say) do not: the ending was not known yet.

Nothing the peer wrote reaches Sentry through this module unsanitised: the close reason is
escaped and capped, and the path, the query string and the headers are never read. (What
Sentry itself attaches, the request's URL and headers and the frames' local variables, is
ruled by its own options, `send_default_pii` and `include_local_variables` among them.)

Outside Sentry's ASGI middleware (`WebSocketCloseMiddleware` wrapped around the Starlette
app instead of added to it, or no Sentry integration for the framework), the isolation
scope is not the connection's but one that outlives it: rather than leave a stale context
on unrelated events, the hook then records nothing and logs one warning. Pass
`isolated=True` if your own code forks an isolation scope per connection
(`with sentry_sdk.isolation_scope(): ...`).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from .._record import CloseContext
from .._sanitize import MAX_REASON_LENGTH
from .._tracker import ConnectionState
from .._types import Scope
from .logging import _summary, close_log_fields

try:
    import sentry_sdk
    from sentry_sdk.integrations import asgi as _sentry_asgi
except ImportError as exc:
    raise ImportError(
        'asgi_ws_close.integrations.sentry needs sentry-sdk: pip install "asgi-ws-close[sentry]"'
    ) from exc

__all__ = [
    "ABNORMAL_OUTCOMES",
    "BREADCRUMB_CATEGORY",
    "CONTEXT_KEY",
    "TAG_OUTCOME",
    "SentryCloseHook",
    "close_sentry_fields",
    "sentry_close",
]

#: The key of the context on the scope, hence on events (`event["contexts"]["websocket_close"]`).
CONTEXT_KEY = "websocket_close"

#: The tag holding the outcome: the OpenTelemetry attribute's name.
TAG_OUTCOME = "websocket.close.outcome"

#: The category of the breadcrumb of an abnormal ending.
BREADCRUMB_CATEGORY = "websocket"

#: Outcomes that add a breadcrumb even when the close was clean.
ABNORMAL_OUTCOMES: frozenset[str] = frozenset(
    {"dropped", "app_error", "server_timeout", "server_shutdown", "server_error"}
)

# The fields of close_log_fields() that make the context: no path, no client address, no
# error (the event has the exception itself), no timestamps (the event has its own).
_CONTEXT_FIELDS = (
    "outcome",
    "state",
    "initiator",
    "code",
    "code_explanation",
    "reason",
    "clean",
    "http_status",
    "http_version",
    "duration",
    "server",
    "unknown",
)

logger = logging.getLogger("asgi_ws_close")


def close_sentry_fields(
    context: CloseContext, *, record_reason: bool = True, max_length: int = MAX_REASON_LENGTH
) -> dict[str, Any]:
    """Return the `websocket_close` context of an ended connection: a fresh, JSON-ready dict.

    The keys are a subset of `close_log_fields()`'s, with the same sanitising: every string
    went through `sanitize_reason()` with `max_length`. There is no path, query string,
    header or client address in it.

    Args:
        context: The connection's context.
        record_reason: Whether to include the (sanitised) close reason; `False` leaves the key
            out, for reasons that may carry personal data.
        max_length: The cap on every sanitised string, in characters.
    """
    return _context_of(close_log_fields(context, max_length=max_length), record_reason)


def _context_of(fields: dict[str, Any], record_reason: bool) -> dict[str, Any]:
    return {key: fields[key] for key in _CONTEXT_FIELDS if record_reason or key != "reason"}


def _inside_sentry_asgi() -> bool:
    # True inside Sentry's ASGI middleware (the Starlette, FastAPI, Litestar, Quart and Django
    # integrations use it), which forks an isolation scope per request and per WebSocket.
    # A private name of sentry-sdk (1.x to 3.x): should it go, trust the scope.
    applied = getattr(_sentry_asgi, "_asgi_middleware_applied", None)
    if not isinstance(applied, ContextVar):
        return True
    return bool(applied.get(False))


class SentryCloseHook:
    """An `on_close` hook that puts how the connection ended on its Sentry scope.

    See the module's documentation for what lands on events. Does nothing while Sentry is
    not initialised, nor for a connection that has not ended (a hook called by hand).

    Args:
        record_reason: Whether the context gets the (sanitised) close reason, and the
            breadcrumb's message the reason at its end. Turn it off if reasons may carry
            personal data.
        max_length: The cap on every sanitised string, in characters.
        breadcrumbs: Whether abnormal endings add a breadcrumb.
        isolated: `None` (the default) records only inside Sentry's ASGI middleware, whose
            isolation scope is the connection's; `True` records in the current isolation
            scope wherever the hook runs (your code forks one per connection).

    Raises:
        ValueError: `max_length` is less than 1.
    """

    def __init__(
        self,
        *,
        record_reason: bool = True,
        max_length: int = MAX_REASON_LENGTH,
        breadcrumbs: bool = True,
        isolated: bool | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, not {max_length}")
        self.record_reason = record_reason
        self.max_length = max_length
        self.breadcrumbs = breadcrumbs
        self.isolated = isolated
        self._warned = False

    def __call__(self, context: CloseContext, scope: Scope) -> None:
        if context.state < ConnectionState.CLOSED or not sentry_sdk.get_client().is_active():
            return
        if not self.isolated and not _inside_sentry_asgi():
            if not self._warned:
                self._warned = True
                logger.warning(
                    "asgi_ws_close: %r runs outside Sentry's ASGI middleware, so it records nothing: "
                    "add WebSocketCloseMiddleware inside the app (app.add_middleware), "
                    "or wrap it with SentryAsgiMiddleware",
                    self,
                )
            return
        fields = close_log_fields(context, max_length=self.max_length)
        # Scope.get_isolation_scope(): sentry-sdk 2.0 has no top-level get_isolation_scope().
        sentry_scope = sentry_sdk.Scope.get_isolation_scope()
        sentry_scope.set_context(CONTEXT_KEY, _context_of(fields, self.record_reason))
        outcome = fields["outcome"]
        if outcome is not None:
            sentry_scope.set_tag(TAG_OUTCOME, outcome)
        if self.breadcrumbs and (fields["clean"] is False or outcome in ABNORMAL_OUTCOMES):
            sentry_scope.add_breadcrumb(
                category=BREADCRUMB_CATEGORY,
                level="warning",
                message=f"WebSocket {_summary(fields if self.record_reason else {**fields, 'reason': ''})}",
                data={key: fields[key] for key in ("outcome", "initiator", "code", "clean")},
            )

    def __repr__(self) -> str:
        return f"<SentryCloseHook record_reason={self.record_reason} breadcrumbs={self.breadcrumbs}>"


#: The ready hook: `SentryCloseHook()`.
sentry_close = SentryCloseHook()
