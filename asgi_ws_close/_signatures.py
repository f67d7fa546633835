"""Close statuses that an ASGI server generates itself, recognised in ``websocket.disconnect``.

ASGI's ``websocket.disconnect`` does not say who closed. A server that fails a connection
(shutdown, a protocol error it detected in the client's frames, an over-size message)
reports its *own* close code and reason there, in the same shape as a client's close. These
tables recognise those statuses by the texts that the servers' protocol libraries put in
them, so that the tracker can say ``initiator="server"`` instead of ``"client"``.
"""

from __future__ import annotations

import re

__all__: list[str] = []

# 1012 Service Restart is what uvicorn sends on shutdown (all three implementations), with no
# reason key at all; a client's own 1012 comes with a reason (uvicorn reports reason="").
SHUTDOWN_CODES: frozenset[int] = frozenset({1012})

# Reasons put in the disconnect by uvicorn when its protocol library failed the connection:
# websockets (src/websockets/frames.py, protocol.py) and wsproto (frame_protocol.py), plus
# uvicorn's own wsproto size limit (uvicorn/protocols/websockets/wsproto_impl.py).
_SERVER_REASONS: dict[int, re.Pattern[str]] = {
    1002: re.compile(
        r"(?:"
        # websockets
        r"invalid status code|close frame too short|control frame too long|"
        r"fragmented control frame|reserved bits must be 0|invalid opcode|incorrect masking|"
        r"unexpected continuation frame|expected a continuation frame|incomplete fragmented message|"
        # wsproto
        r"CLOSE with (?:invalid code|1 byte payload|unknown reserved code)|"
        r"remote CLOSE with local-only reason|Control frame with payload len > 125|"
        r"Invalid attempt to fragment control frame|Reserved bit set unexpectedly|"
        r"Invalid opcode 0x[0-9a-f]+|unexpected CONTINUATION|expected CONTINUATION, got .*|"
        r"Data type mismatch inside message|server received unexpected unmasked frame|"
        r"Payload length used \d bytes when \d would have sufficed|"
        r"8-byte payload length with non-zero MSB"
        r")\Z"
    ),
    # websockets: "<UnicodeDecodeError.reason> at position N"; wsproto: "Error decoding ...".
    1007: re.compile(r"(?:.+ at position \d+|Error decoding CLOSE reason: .*|.*codec can't decode.*)\Z", re.S),
    # websockets PayloadTooBig; uvicorn's wsproto size limit.
    1009: re.compile(r"(?:.*over size limit.*|Message exceeds the maximum size \(\d+ bytes\))\Z", re.S),
}


def is_server_generated(code: int, reason: str, has_reason: bool = True) -> bool:
    """Tell whether a disconnect status is one the server generated rather than the peer's.

    Args:
        code: The disconnect's code.
        reason: Its reason, ``""`` if none.
        has_reason: Whether the disconnect had a ``reason`` key at all.
    """
    if code in SHUTDOWN_CODES and not has_reason:
        return True
    pattern = _SERVER_REASONS.get(code)
    return pattern is not None and pattern.match(reason) is not None
