"""The one tag validator: ``keel tag``, ``--tag``, ``current.tag``, the client and the dashboard.

A tag is a non-empty line of at most 255 characters with no control characters. Tags that
start with a reserved prefix (``project:``, ``sweep:``, ``reproduces:``) are written by Keel
itself (the project runner, sweeps, reproduce) and name the run that made them; a user cannot
add them, so a run tagged ``sweep:X`` really was a trial of sweep X.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from keel.errors import UsageError, clip

__all__ = ["MAX_TAG_LENGTH", "RESERVED_PREFIXES", "check_tag", "check_tags", "clip", "is_reserved"]

MAX_TAG_LENGTH = 255
RESERVED_PREFIXES: tuple[str, ...] = ("project:", "sweep:", "reproduces:")


def is_reserved(tag: str) -> bool:
    """True for a tag only Keel writes (``project:``, ``sweep:``, ``reproduces:``)."""
    return tag.startswith(RESERVED_PREFIXES)


def check_tag(tag: object, *, system: bool = False) -> str:
    """Return ``tag`` if it is a valid tag, else raise UsageError saying why (with a short prefix of it).

    ``system=True`` is Keel's own path for the reserved prefixes."""
    if not isinstance(tag, str):
        raise UsageError(f"a tag is a string, not {type(tag).__name__}")
    if not tag.strip():
        raise UsageError("a tag cannot be empty or blank; give a name such as 'baseline'")
    if len(tag) > MAX_TAG_LENGTH:
        raise UsageError(f"the tag {clip(tag)} is {len(tag)} characters long; a tag has at most "
                         f"{MAX_TAG_LENGTH}: put longer text in a comment (keel comment FLOW/RUN TEXT)")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in tag):
        raise UsageError(f"the tag {clip(tag)} contains a line break or a control character; "
                         f"a tag is one line of printable text")
    if not system and is_reserved(tag):
        prefix = next(p for p in RESERVED_PREFIXES if tag.startswith(p))
        raise UsageError(f"the tag {clip(tag)} starts with {prefix!r}, which Keel reserves for the runs it "
                         f"starts itself ({', '.join(RESERVED_PREFIXES)}); choose another name")
    return tag


def check_tags(tags: Iterable[object], *, system: bool = False) -> list[str]:
    """Every tag checked by :func:`check_tag`, in order."""
    return [check_tag(t, system=system) for t in tags]
