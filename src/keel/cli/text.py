"""Stored text shown in a terminal: always as text, never as markup or terminal control.

Tags, parameters, comments, authors, error messages and task logs come from users (on a
shared store, from other users). ``plain`` makes control characters and escape sequences
visible (``\\x1b[2J`` is shown, not obeyed) and ``markup`` also escapes rich markup so that
``[/x]`` prints as written. ``--json`` output keeps the raw text.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["markup", "plain"]

# C0 and C1 controls, DEL, and the Unicode bidi overrides/isolates that reorder what a line shows
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _visible(m: re.Match[str]) -> str:
    c = m.group(0)
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100
                                                              else f"\\u{ord(c):04x}")


def plain(value: Any, *, multiline: bool = False) -> str:
    """``value`` as printable text: control characters shown as escapes (``\\x1b``), line breaks
    kept only when ``multiline`` (tabs too)."""
    text = value if isinstance(value, str) else str(value)
    return (_UNSAFE if multiline else _UNSAFE_ONE_LINE).sub(_visible, text)


def markup(value: Any, *, multiline: bool = False) -> str:
    """``plain(value)`` with rich markup escaped, for rich's ``print`` and tables."""
    from rich.markup import escape

    return escape(plain(value, multiline=multiline))
