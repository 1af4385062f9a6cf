"""JSON for other programs: JSON has no NaN or infinity, so Keel writes them as strings.

A metric or parameter that is NaN, +inf or -inf (a diverging loss) appears in every JSON
output (``--json``, ``keel export``, the dashboard's API) as the string ``"nan"``,
``"inf"`` or ``"-inf"`` (Python's spelling; ``float()`` reads it back), never as a bare
``NaN`` token that strict parsers reject.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps", "finite"]


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (in dicts, lists and tuples) replaced by its name."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``finite(value)``: always valid JSON (``allow_nan=False``)."""
    kwargs.setdefault("default", repr)
    return json.dumps(finite(value), allow_nan=False, **kwargs)
