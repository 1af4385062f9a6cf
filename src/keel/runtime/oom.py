"""Was a process killed by the kernel's out-of-memory killer?

A process the OOM killer ends dies of SIGKILL like any other; the only trace is the kernel
log line ``Out of memory: Killed process PID (name)`` (or ``Memory cgroup out of memory:
Killed process PID ...`` under a cgroup limit). Reading it needs ``/dev/kmsg`` (root or
CAP_SYSLOG); where it cannot be read the answer is None and the message says "maybe".
"""

from __future__ import annotations

import errno
import os
import re
import time


def killed_by_oom(pid: int, *, wait: float = 0.1) -> bool | None:
    """True when the kernel log says the OOM killer killed ``pid``; None when it cannot tell.

    ``wait``: the kernel logs the kill while the victim is still exiting, so look again for a
    moment before answering False."""
    pattern = re.compile(rb"[Kk]illed process %d \(" % pid)
    deadline = time.monotonic() + wait
    while True:
        found = _scan(pattern)
        if found is not False or time.monotonic() >= deadline:
            return found
        time.sleep(0.02)


def _scan(pattern: re.Pattern[bytes]) -> bool | None:
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten while we read: go on
                    continue
                return None
            if not record:
                return False
            if pattern.search(record):
                return True
    finally:
        os.close(fd)
