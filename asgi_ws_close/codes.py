r"""Close codes and reasons: validate, explain, bound and sanitise them.

Helpers for code that handles close codes and close reasons itself (an app's own policy, a
hook that labels metrics or logs a reason), the same ones the middleware and its
integrations use:

```python
from asgi_ws_close.codes import CloseCode, code_label, is_valid_close_code, sanitize_reason

assert is_valid_close_code(4001) and not is_valid_close_code(1006)  # 1006 never travels
assert code_label(4001) == "4xxx" and code_label(4001, keep={4001}) == "4001"
assert sanitize_reason("bye\x1b[31m") == "bye\\x1b[31m"  # a peer's terminal escape, made inert
print(CloseCode(1001).name)  # GOING_AWAY
```
"""

from __future__ import annotations

from ._codes import (
    CLOSE_CODE_EXPLANATIONS,
    MAX_REASON_BYTES,
    OK_CLOSE_CODES,
    Close,
    CloseCode,
    close_violation,
    is_valid_close_code,
    truncate_reason,
)
from ._sanitize import CODE_LABELS, ELLIPSIS, MAX_REASON_LENGTH, code_label, sanitize_reason

__all__ = [
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
]
