"""Close codes and the close frame payload, as RFC 6455 and the IANA registry define them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CLOSE_CODE_EXPLANATIONS", "OK_CLOSE_CODES", "Close", "CloseCode"]


class CloseCode(enum.IntEnum):
    """Close code values for WebSocket close frames.

    The member names are those of :class:`websockets.frames.CloseCode`. Members compare
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

# Looking a code up here turns a registered int into its enum member, cheaply.
_MEMBERS: dict[int, CloseCode] = {int(member): member for member in CloseCode}


def as_close_code(code: int) -> CloseCode | int:
    """Return the :class:`CloseCode` member for ``code``, or ``code`` as a plain int."""
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


@dataclass(frozen=True, slots=True)
class Close:
    """The code and reason of one close, in one direction.

    Attributes:
        code: The close code: a :class:`CloseCode` member for registered codes, else an int
            (3000-4999 are registered-library and private-use codes).
        reason: The close reason; ``""`` when none was given.
    """

    code: int
    reason: str = ""

    def __str__(self) -> str:
        result = f"{int(self.code)} ({explain(self.code)})"
        if self.reason:
            result = f"{result} {self.reason}"
        return result
