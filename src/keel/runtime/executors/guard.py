"""A guard process that makes sure no task process outlives its scheduler.

A task process dies with the scheduler (PR_SET_PDEATHSIG), but what the task started itself
(a subprocess, a pool of workers) would be left behind, re-parented to init, when the
scheduler is killed with SIGKILL. The guard is a tiny process forked from the scheduler
before any task: the scheduler tells it each task's process group as the task starts and
ends, and when the scheduler dies without saying goodbye (the guard watches its pidfd and
the pipe between them), the guard kills every process group still registered, then exits.

    guard = TaskGuard()
    guard.watch(pgid); ...; guard.forget(pgid)
    guard.close()            # the run ended normally: the guard leaves without killing
"""

from __future__ import annotations

import os
import select
import signal
import weakref

_OPEN_WRITE_ENDS: set[int] = set()


def _close_in_child() -> None:
    # A forked task must not hold the guard's pipe: its end is the scheduler's alone.
    for fd in list(_OPEN_WRITE_ENDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _OPEN_WRITE_ENDS.clear()


os.register_at_fork(after_in_child=_close_in_child)


def _guard_main(read_fd: int, parent: int) -> None:  # pragma: no cover - runs in the guard
    code = 0
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, read_fd)
        os.closerange(read_fd + 1, 1 << 16)
        groups: set[int] = set()
        buffer = b""
        try:
            pidfd = os.pidfd_open(parent)
        except OSError:
            pidfd = -1
        poll = select.poll()
        poll.register(read_fd, select.POLLIN)
        if pidfd >= 0:
            poll.register(pidfd, select.POLLIN)
        os.set_blocking(read_fd, False)
        parent_gone = pidfd < 0 and os.getppid() != parent
        while not parent_gone:
            for fd, _ in poll.poll():
                if fd == pidfd:
                    parent_gone = True
                    continue
                try:
                    data = os.read(read_fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    parent_gone = True  # the pipe closed without a goodbye
                    continue
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line == b"bye":
                        os._exit(0)
                    if line[:1] == b"+":
                        groups.add(int(line[1:]))
                    elif line[:1] == b"-":
                        groups.discard(int(line[1:]))
        try:  # registrations written just before the scheduler died
            while True:
                data = os.read(read_fd, 1 << 16)
                if not data:
                    break
                buffer += data
        except OSError:
            pass
        for line in buffer.split(b"\n"):
            if line == b"bye":
                os._exit(0)
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
    except BaseException:  # noqa: BLE001 - a guard has nobody to report to
        code = 1
    os._exit(code)


class TaskGuard:
    """The scheduler's side of the guard process (see the module docstring)."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the guard
            _guard_main(read_fd, parent)
        os.close(read_fd)
        self.pid = pid
        self._fd: int | None = write_fd
        _OPEN_WRITE_ENDS.add(write_fd)
        self._finalizer = weakref.finalize(self, TaskGuard._shutdown, write_fd, pid)

    def _send(self, line: bytes) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, line)
        except OSError:
            pass

    def watch(self, pgid: int) -> None:
        """Kill this process group if the scheduler dies."""
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def close(self) -> None:
        """The run is over: let the guard go without killing anything."""
        if self._fd is not None:
            self._fd = None
            self._finalizer()

    @staticmethod
    def _shutdown(fd: int, pid: int) -> None:
        try:
            os.write(fd, b"bye\n")
        except OSError:
            pass
        try:
            os.close(fd)
        except OSError:
            pass
        _OPEN_WRITE_ENDS.discard(fd)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
