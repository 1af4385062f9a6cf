"""The tag validator's old home: it lives in :mod:`keel.flow.tags` (the runtime checks tags too,
and may not import tracking)."""

from __future__ import annotations

from keel.flow.tags import MAX_TAG_LENGTH, RESERVED_PREFIXES, check_tag, check_tags, clip, is_reserved

__all__ = ["MAX_TAG_LENGTH", "RESERVED_PREFIXES", "check_tag", "check_tags", "clip", "is_reserved"]
