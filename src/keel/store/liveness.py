"""Is the process that runs a run still alive? Heartbeats and process identity.

A run's scheduler writes a heartbeat every ``heartbeat_seconds()`` (``KEEL_HEARTBEAT_SECONDS``,
default 2). A reader shows a *running* run as *crashed*:

- at once, when the reader is on the same machine (same host name, same pid namespace and
  boot) and the scheduler's process is gone, or its pid now belongs to another process;
- otherwise when the heartbeat is older than ``crash_after_seconds()`` (three missed beats;
  ``KEEL_CRASH_AFTER_SECONDS`` overrides it).

Settings are read when asked for, never at import time.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from keel.settings import DEFAULT_HEARTBEAT_SECONDS, MISSED_BEATS


def heartbeat_seconds() -> float:
    """How often a scheduler writes its heartbeat (``KEEL_HEARTBEAT_SECONDS``, default 2)."""
    from keel.settings import Settings

    return Settings.from_env().heartbeat_seconds


def crash_after_seconds() -> float:
    """How old a heartbeat may be before a running run is shown as crashed."""
    from keel.settings import Settings

    return Settings.from_env().crash_after_seconds


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_identity() -> dict[str, Any]:
    """What tells this process apart from any other, kept with the run it starts."""
    identity: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "pid_ns": _namespace(),
                                "boot_id": _read("/proc/sys/kernel/random/boot_id")}
    try:
        identity["started"] = _process_start(os.getpid())[0]
    except Exception:  # noqa: BLE001 - without it the heartbeat alone decides
        pass
    return identity


def _process_start(pid: int) -> tuple[float, bool]:
    """When the process started (seconds since the epoch, as psutil's ``create_time``) and
    whether it is a zombie. Read from /proc on Linux (psutil's import costs a short command
    ~20 ms), from psutil elsewhere; raises when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        with open("/proc/stat", "rb") as fh:
            btime = next(float(line.split()[1]) for line in fh if line.startswith(b"btime"))
    except FileNotFoundError:
        if os.path.exists("/proc/self/stat"):
            raise ProcessLookupError(pid) from None   # Linux, and the process is gone
        import psutil

        proc = psutil.Process(pid)
        return float(proc.create_time()), proc.status() == psutil.STATUS_ZOMBIE
    except (OSError, StopIteration, ValueError, IndexError):
        import psutil

        proc = psutil.Process(pid)
        return float(proc.create_time()), proc.status() == psutil.STATUS_ZOMBIE
    fields = stat[stat.rindex(b")") + 2:].split()   # the name may hold spaces and brackets
    return int(fields[19]) / os.sysconf("SC_CLK_TCK") + btime, fields[0] == b"Z"


def process_alive(identity: dict[str, Any] | None) -> bool | None:
    """True or False when this machine can tell whether that process still runs; None when it
    cannot (another machine or container, or no identity recorded)."""
    if not identity or not identity.get("pid"):
        return None
    if (identity.get("host") != socket.gethostname() or not identity.get("pid_ns")
            or identity.get("pid_ns") != _namespace()
            or identity.get("boot_id") != _read("/proc/sys/kernel/random/boot_id")):
        return None
    pid = int(identity["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    started = identity.get("started")
    if started is None:
        return True
    try:
        created, zombie = _process_start(pid)
        if zombie:
            return False
        return abs(created - float(started)) < 1.0  # else the pid was reused
    except Exception:  # noqa: BLE001 - it ended while we looked
        return False


def effective_status(status: str, environment: Any, heartbeat_at: float | None, created_at: float,
                     now: float) -> str:
    """The one answer to "is this run crashed?": the status a reader shows for a run.

    A ``running`` run whose scheduler is gone (seen at once on its machine) or whose heartbeat
    is older than ``crash_after_seconds()`` is ``crashed``; any other status is shown as kept.
    ``RunRecord.effective_status`` and the query API (``status = "crashed"``) both ask here."""
    if status != "running":
        return status
    alive = process_alive((environment or {}).get("scheduler"))
    if alive is not None:
        return "running" if alive else "crashed"
    return "crashed" if now - (heartbeat_at or created_at) > crash_after_seconds() else "running"
