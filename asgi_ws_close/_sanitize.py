"""Make peer-controlled values safe for log lines and metric labels.

A close reason is up to 123 bytes chosen by whoever is on the other end of the connection:
newlines that forge log lines, ANSI escapes that repaint a terminal, NULs that cut a C
string, bidi overrides that reverse the text around them. `sanitize_reason` turns any
string into one printable line of bounded length, and `code_label` turns any close
code into one of a small, fixed set of metric label values.

Both are pure functions of their arguments: no I/O, no state.
"""

from __future__ import annotations

from collections.abc import Collection

from ._codes import MAX_REASON_BYTES, CloseCode

__all__ = ["CODE_LABELS", "ELLIPSIS", "MAX_REASON_LENGTH", "code_label", "sanitize_reason"]

#: The default cap of `sanitize_reason`, in characters of output: the longest a reason
#: can be on the wire, in bytes (RFC 6455 5.5), so that a plain ASCII reason is never cut.
MAX_REASON_LENGTH = MAX_REASON_BYTES

#: Ends a sanitised string that was cut. In the input it is escaped (``\u2026``), so that a
#: trailing ellipsis in the output always means "cut here", never "the peer wrote one".
ELLIPSIS = "\u2026"

# repr()-style short escapes; the backslash is escaped so that the output can be read back
# unambiguously: a peer's literal "\x1b" (4 characters) becomes "\\x1b", an ESC becomes "\x1b".
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", ELLIPSIS: "\\u2026"}

# The codes of the IANA registry (1000-1003, 1005-1015): each is its own label.
_REGISTERED_CODES: frozenset[int] = frozenset(int(code) for code in CloseCode)

#: Every value `code_label` can return without ``keep``: the registered codes, one
#: range label per thousand from 1xxx to 4xxx (anything else of 1000-4999 falls in one),
#: ``"other"`` (outside 1000-4999) and ``"none"`` (no code).
CODE_LABELS: frozenset[str] = frozenset(
    {*(str(code) for code in _REGISTERED_CODES), "1xxx", "2xxx", "3xxx", "4xxx", "other", "none"}
)


def _escape(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    if char.isprintable():
        return char
    # Not printable: C0 and C1 controls (ESC, NUL, NEL...), DEL, format characters (bidi
    # overrides, zero-width spaces), line and paragraph separators, lone surrogates,
    # unassigned code points, and spaces other than " ".
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def sanitize_reason(reason: str, max_length: int = MAX_REASON_LENGTH) -> str:
    r"""Return ``reason`` as one printable line of at most ``max_length`` characters.

    Every character that `str.isprintable` rejects is escaped the way `repr`
    escapes it (``\n``, ``\r``, ``\t``, ``\x1b``, ``\x00``, ``\x7f``, ``\u202e``, ...), and so
    is the backslash itself (``\\``), so the output reads back to exactly one input, with
    `ast.literal_eval` for instance. Printable text, accents and emoji included, is
    kept as it is. If the escaped text is longer than ``max_length``, it is cut on an escape
    boundary and ends with `ELLIPSIS` (``…``), the ellipsis included in the count.

    The work done is bounded by ``max_length``, whatever the length of ``reason``. The output
    never contains a control character and is always encodable as UTF-8 (lone surrogates
    are escaped too).

    Use it for any text a peer controls before it reaches a log line: close reasons, paths,
    exception messages.

    Args:
        reason: The untrusted text.
        max_length: The longest output, in characters; at least 1.

    Returns:
        The sanitised text: ``reason`` itself when it needs no change.

    Raises:
        ValueError: ``max_length`` is less than 1.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1 (room for the ellipsis), not {max_length}")
    # The common case, a short printable reason, costs two scans and no copy.
    if len(reason) <= max_length and reason.isprintable() and "\\" not in reason and ELLIPSIS not in reason:
        return reason
    room = max_length - len(ELLIPSIS)
    pieces: list[str] = []
    used = 0
    cut = -1  # how many pieces fit before the ellipsis, once known
    for char in reason:
        piece = _escape(char)
        if cut < 0 and used + len(piece) > room:
            cut = len(pieces)
        used += len(piece)
        pieces.append(piece)
        if used > max_length:
            return "".join(pieces[:cut]) + ELLIPSIS
    return "".join(pieces)


def code_label(code: int | None, keep: Collection[int] = ()) -> str:
    """Return a bounded metric label value for a close code.

    The codes of the IANA registry (1000-1003, 1005-1015) and those in ``keep`` are their
    own labels (``"1000"``, ``"4001"``); any other code from 1000 to 4999 collapses into the
    label of its thousand (``"1xxx"`` for 1004 and 1016-1999, ``"2xxx"``, ``"3xxx"`` for
    registered library codes, ``"4xxx"`` for private-use codes); anything else is
    ``"other"``, and ``None`` is ``"none"``. So at most ``len(CODE_LABELS) + len(keep)``
    values exist, whatever codes peers send.

    Args:
        code: The close code, or ``None``.
        keep: Codes, typically the app's own 4000-4999 codes, that deserve a label each.
            It must be a fixed set: every code in it may become a time series.

    Returns:
        The label value.
    """
    if code is None:
        return "none"
    code = int(code)
    if code in _REGISTERED_CODES or code in keep:
        return str(code)
    # 7.4.2 Reserved Status Code Ranges: 0-999 unused, 1000-2999 for the protocol,
    # 3000-3999 for libraries and frameworks, 4000-4999 for private use.
    if 1000 <= code <= 4999:
        return f"{code // 1000}xxx"
    return "other"
