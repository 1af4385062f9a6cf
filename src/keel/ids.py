"""Run and task ids as users write them: the one parser, so every command reads them alike.

Ids are stored as 64-bit signed integers (SQLite INTEGER, PostgreSQL BIGINT), so an id is a
run of ASCII digits no larger than ``MAX_ID``; anything else is a usage error naming the id,
never an OverflowError from the database driver.
"""

from __future__ import annotations

from keel.errors import UsageError

MAX_ID = 2**63 - 1


def is_id(text: str) -> bool:
    """``text`` is an id: ASCII digits (not "²" or "٣") of a number a database column can hold."""
    return bool(text) and text.isascii() and text.isdigit() and int(text) <= MAX_ID


def parse_id(text: str, what: str = "run id", where: str = "") -> int:
    """``text`` as an id, or a :class:`UsageError` that says what an id looks like."""
    text = str(text)
    if is_id(text):
        return int(text)
    shown = text if len(text) <= 40 else text[:40] + "…"
    place = f"malformed pathspec {where if len(where) <= 80 else where[:80] + '…'!r}: " if where else ""
    if text.isascii() and text.isdigit():
        raise UsageError(f"{place}the {what} {shown} is out of range: ids are integers from 0 to {MAX_ID}")
    raise UsageError(f"{place}the {what} {shown!r} must be an integer")


def in_range(value: int) -> bool:
    """An int (from the Python API) that a stored id can equal; larger ones match nothing."""
    return 0 <= value <= MAX_ID
