"""The error a user can fix, and how any message becomes one line (issue 17 items 9-10).

Its own module so that commands do not import runtime.cli, which imports them (issue 19 item 9).
"""

from __future__ import annotations

__all__ = ["UserError", "one_line"]

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback, exit code 2."""


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ...), so that a file name with
    a newline cannot split a table row or an error line in two, nor a terminal escape act."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else _ESCAPES.get(c, f"\\x{ord(c):02x}" if ord(c) < 256
                                                                         else f"\\u{ord(c):04x}") for c in text)
