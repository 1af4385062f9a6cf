"""Sizes as people write them: ``512M``, ``2G``, ``1.5GB`` or a plain number of MB.

The one parser of sizes: keel.yaml's ``resources: {memory: 2G}`` and ``@resources(memory="2G")``
both read it, so a size means the same everywhere.
"""

from __future__ import annotations

import re
from typing import Any

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_MB = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 * 1024, "": 1.0}


def parse_size(value: Any) -> float:
    """Megabytes from ``512M``, ``2G``, ``1.5GB`` or a plain number (already MB, like @resources)."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 512M or 2G")
    if isinstance(value, (int, float)):
        if not value > 0:  # NaN too
            raise ValueError("must be more than 0")
        if value == float("inf"):
            raise ValueError("must be finite, such as 512M or 2G")
        return float(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError("must be a size such as 512M or 2G (K, M, G or T; a plain number is MB)")
    mb = float(match.group(1)) * _MB[match.group(2).upper()]
    if mb <= 0:
        raise ValueError("must be more than 0")
    return mb
