"""What the alert tests share besides their fixtures (imported by name: a test module that did
`from conftest import ...` got whichever conftest was imported first when several folders are
collected together)."""

from __future__ import annotations

import time
from typing import Any, Callable

SECRET = "s3cret"  # the webhook receiver's HMAC key


def poll(check: Callable[[], Any], timeout: float = 60.0, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout} s")
