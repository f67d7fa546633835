"""Close codes and the close frame payload, as RFC 6455 and the IANA registry define them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CLOSE_CODE_EXPLANATIONS",
    "MAX_REASON_BYTES",
    "OK_CLOSE_CODES",
    "Close",
    "CloseCode",
    "close_violation",
    "is_valid_close_code",
    "truncate_reason",
]


class CloseCode(enum.IntEnum):
    """Close code values for WebSocket close frames.

    The member names are those of `websockets.frames.CloseCode`. Members compare
    equal to plain ints and to Starlette's ``status.WS_1000_*`` constants. See
    https://www.rfc-editor.org/rfc/rfc6455#section-7.4.1 and
    https://www.iana.org/assignments/websocket/websocket.xhtml.
    """

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    # 1004 is reserved
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


#: Short explanations of the registered codes, as ``websockets`` words them.
CLOSE_CODE_EXPLANATIONS: dict[int, str] = {
    CloseCode.NORMAL_CLOSURE: "OK",
    CloseCode.GOING_AWAY: "going away",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.UNSUPPORTED_DATA: "unsupported data",
    CloseCode.NO_STATUS_RCVD: "no status received [internal]",
    CloseCode.ABNORMAL_CLOSURE: "abnormal closure [internal]",
    CloseCode.INVALID_DATA: "invalid frame payload data",
    CloseCode.POLICY_VIOLATION: "policy violation",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.MANDATORY_EXTENSION: "mandatory extension",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.SERVICE_RESTART: "service restart",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.BAD_GATEWAY: "bad gateway",
    CloseCode.TLS_HANDSHAKE: "TLS handshake failure [internal]",
}

#: Codes that mean "nothing went wrong" (``websockets.frames.OK_CLOSE_CODES``).
OK_CLOSE_CODES: frozenset[int] = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD})

# 7.4.1: 1004 is reserved; 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close
# control frame". IANA added 1012-1014. (A set: `code in ...` is the hot question.)
_WIRE_REGISTERED_CODES: frozenset[int] = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})

#: 5.5: a control frame's payload is at most 125 bytes, 2 of which carry the code.
MAX_REASON_BYTES = 123

# Looking a code up here turns a registered int into its enum member, cheaply.
_MEMBERS: dict[int, CloseCode] = {int(member): member for member in CloseCode}


def as_close_code(code: int) -> CloseCode | int:
    """Return the `CloseCode` member for ``code``, or ``code`` as a plain int."""
    return _MEMBERS.get(code, code)


def explain(code: int) -> str:
    """Return a short, human explanation of ``code``, by registry range for unknown codes."""
    explanation = CLOSE_CODE_EXPLANATIONS.get(code)
    if explanation is not None:
        return explanation
    # 7.4.2 Reserved Status Code Ranges
    if 3000 <= code < 4000:
        return "registered"
    if 4000 <= code < 5000:
        return "private use"
    return "unknown"


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may be sent in a close frame (RFC 6455 7.4, IANA registry).

    Valid: 1000-1003, 1007-1014 and 3000-4999. Not valid: 1004 (reserved), 1005, 1006 and 1015
    (local-only), 1016-2999 (unassigned), and anything below 1000 or above 4999.
    """
    return code in _WIRE_REGISTERED_CODES or 3000 <= code <= 4999


def truncate_reason(reason: str, max_bytes: int = MAX_REASON_BYTES) -> str:
    """Cut ``reason`` to at most ``max_bytes`` bytes of UTF-8, on a character boundary.

    Characters that UTF-8 cannot encode (lone surrogates) become ``?``.
    """
    try:
        encoded = reason.encode("utf-8")
    except UnicodeEncodeError:
        encoded = reason.encode("utf-8", "replace")
    else:
        if len(encoded) <= max_bytes:
            return reason
    # The cut may split the last character: "ignore" drops that incomplete tail, nothing else.
    return encoded[:max_bytes].decode("utf-8", "ignore")


def close_violation(code: int, reason: str) -> str | None:
    """Return the RFC 6455 rule a close with ``code`` and ``reason`` breaks, or ``None``."""
    if not is_valid_close_code(code):
        return (
            f"close code {code} cannot be sent in a close frame: RFC 6455 allows 1000-1003, "
            "1007-1014 and 3000-4999 (1005, 1006 and 1015 are for reporting only)"
        )
    try:
        size = len(reason.encode("utf-8"))
    except UnicodeEncodeError:
        return "close reason is not valid UTF-8 (it contains a lone surrogate)"
    if size > MAX_REASON_BYTES:
        return (
            f"close reason is {size} bytes of UTF-8: RFC 6455 allows at most {MAX_REASON_BYTES} "
            "(a close frame's payload is at most 125 bytes, code included)"
        )
    return None


@dataclass(frozen=True, slots=True)
class Close:
    """The code and reason of one close, in one direction.

    Attributes:
        code: The close code: a `CloseCode` member for registered codes, else an int
            (3000-4999 are registered-library and private-use codes).
        reason: The close reason; ``""`` when none was given.
    """

    code: int
    reason: str = ""

    def __str__(self) -> str:
        # The reason comes from a peer: str() is what ends up in logs, so it is sanitised
        # (escaped and capped); the attribute keeps it as it came.
        from ._sanitize import sanitize_reason

        result = f"{int(self.code)} ({explain(self.code)})"
        if self.reason:
            result = f"{result} {sanitize_reason(self.reason)}"
        return result
