"""Nothing a task starts outlives it.

A task process makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process that
its code starts and that detaches (``setsid``, a double fork) is re-parented to the task, not
to init, so it stays in the task's tree. When the task ends, :func:`kill_descendants` kills
that whole tree; the executor does the same before it kills a task (timeout, Ctrl-C).

A task killed from outside (``kill -9`` by a user) cannot clean up: its orphans go to the
nearest subreaper above it. The process that forks tasks (the scheduler, or the fork server) is
one too, and each task writes its pid into its environment (``KEEL_TASK_PID``), which what it
starts inherits; :func:`collect_orphans` kills the adopted processes whose task has ended.
(A process forked without exec keeps its parent's original environment block, so a daemon made
by ``os.fork`` alone in the task's own Python code is not recognised this way.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

__all__ = ["TASK_ENV", "become_subreaper", "collect_orphans", "descendants", "kill_descendants", "mark_task"]

_PR_SET_CHILD_SUBREAPER = 36

#: The environment variable that names, in every process a task starts, the task's pid.
TASK_ENV = "KEEL_TASK_PID"


def become_subreaper(libc: Any = None) -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False where unsupported.
    ``libc``: a ``ctypes.CDLL`` already opened (a forked task saves the dlopen)."""
    try:
        if not libc:
            libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def descendants(pid: int) -> list[int]:
    """Every living descendant of ``pid`` (children first), zombies left out."""
    try:
        import psutil

        procs = psutil.Process(pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - the process is gone, or psutil cannot see it
        return []
    out = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except Exception:  # noqa: BLE001 - it ended meanwhile
            continue
    return out


def _has_children() -> bool:
    """Whether this process has a child (cheap, from /proc; True when /proc cannot say)."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return True
    for tid in tids:
        try:  # os.open/os.read: three system calls where open() makes nine, in every task's end
            fd = os.open(f"/proc/self/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if os.read(fd, 64).strip():
                    return True
            finally:
                os.close(fd)
        except FileNotFoundError:
            continue  # that thread ended meanwhile (the metrics sampler, just stopped): it has no children
        except OSError:
            return True
    return False


def _reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(pid: int | None = None, *, deadline_s: float = 5.0) -> int:
    """SIGKILL every descendant of ``pid`` (this process by default) until none is left or the
    deadline passes (one may fork while the others die); reap the ones that were our children.
    Returns how many were killed."""
    me = pid is None or pid == os.getpid()
    root = os.getpid() if pid is None else pid
    killed: set[int] = set()
    if me:
        _reap_children()
        if not _has_children():  # a subreaper without children has no descendants: the usual case
            return 0
    end = time.monotonic() + deadline_s
    while True:
        found = descendants(root)
        if not found:
            break
        for p in found:
            try:
                os.kill(p, signal.SIGKILL)
                killed.add(p)
            except (ProcessLookupError, PermissionError):
                pass
        if me:
            _reap_children()
        if time.monotonic() > end:
            break
        time.sleep(0.01)  # the kernel delivers the kills; look again for what forked meanwhile
    if me:
        _reap_children()
    return len(killed)


def mark_task() -> None:
    """In a task process: name this task in the environment its descendants inherit."""
    os.environ[TASK_ENV] = str(os.getpid())


def _children() -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as fh:
                out += [int(p) for p in fh.read().split()]
    except (OSError, ValueError):
        pass
    return out


def _task_of(pid: int) -> int | None:
    """The task that started ``pid`` (its ``KEEL_TASK_PID``), or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = fh.read()
    except OSError:
        return None
    key = TASK_ENV.encode() + b"="
    for entry in env.split(b"\0"):
        if entry.startswith(key):
            value = entry[len(key):]
            return int(value) if value.isdigit() else None
    return None


def collect_orphans(running: set[int]) -> int:
    """Kill (with their trees) the children this subreaper adopted from tasks that ended, i.e.
    those whose ``KEEL_TASK_PID`` is not in ``running``; reap them. Returns how many."""
    killed = 0
    for pid in _children():
        if pid in running:  # a task itself (our own child), not something it left: no need to read its environ
            continue
        owner = _task_of(pid)
        if owner is None or owner in running or owner == os.getpid():
            continue
        killed += kill_descendants(pid, deadline_s=1.0)
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError, PermissionError):
            pass
    return killed
