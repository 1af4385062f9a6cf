"""A small process that forks the local executor's step task processes (a fork server, or zygote).

Forking the scheduler costs a task more than its work does: the scheduler has imported
SQLAlchemy, rich and the store and holds the run's state (~50 MB), so every fork copies its
page tables and every page the task touches is copied on write. The fork server is a fresh
interpreter that imports only the flow file and ``keel.runtime.task``; the scheduler asks it
for a warm worker (worker.py: a process that runs step tasks one after another) over a Unix
socket, passing the worker's end of a new socket pair; it forks the worker, reaps it and
reports its pid and exit status. Tasks then go to the worker directly.

What stays as before: the worker is its own process group (timeouts and ``kill`` signal the
group from the scheduler), it dies with its parent (PR_SET_PDEATHSIG) and the fork server
dies with the scheduler, the guard watches its pid, a crash or signal ends only that worker
and its task. Command tasks (project jobs) and flows whose class cannot be imported from a
file are forked from the scheduler as before; so is everything when the fork server fails
to start. It is on by default (``KEEL_FORK_SERVER=0`` turns it off). It starts with the
executor; a step task waits for it to be ready only while no other task runs (at most 5 s),
otherwise it is forked from the scheduler; a run that forks no step task (fully cached) kills it.

Protocol (both ways): a 4-byte big-endian length, then a pickle.
  scheduler -> server: ("hello", flow_file, flow_name, artifacts, sys_path)
                       ("worker", tasks_per_process) + one fd (the worker's socket)
  server -> scheduler: ("ready",) | ("error", text) | ("started", pid) | ("exit", pid, status)
"""

from __future__ import annotations

import os
import pickle
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.runtime.executors.worker import Worker

_HEADER = struct.Struct(">I")


def send(sock: socket.socket, message: Any, fds: list[int] | None = None) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    frame = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [frame], fds)
        frame = frame[sent:]
    if frame:
        sock.sendall(frame)


def recv(sock: socket.socket, with_fds: bool = False) -> tuple[Any, list[int]]:
    """One message (and the fds sent with it); (None, []) at end of stream."""
    fds: list[int] = []
    if with_fds:
        try:
            head, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 4)
        except ConnectionResetError:
            return None, fds
        if len(head) < _HEADER.size and head:
            head += _exact(sock, _HEADER.size - len(head))
    else:
        head = _exact(sock, _HEADER.size)
    if len(head) < _HEADER.size:  # the end of the stream (or a reset: the peer closed with data unread)
        return None, fds
    return pickle.loads(_exact(sock, _HEADER.unpack(head)[0])), fds


def _exact(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        try:
            chunk = sock.recv(left)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class ForkServer:
    """The scheduler's handle on a fork server process (see the module docstring)."""

    def __init__(self, flow_cls: type, artifacts: Any):
        import inspect

        flow_file = inspect.getfile(flow_cls)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "keel.runtime.executors.forkserver", str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL, close_fds=True)
        theirs.close()
        self.sock = mine
        self.pid = self.proc.pid
        send(mine, ("hello", os.path.abspath(flow_file), flow_cls.__name__, artifacts, list(sys.path)))
        self.ready: bool | None = None  # None until the server answers the hello
        self.used = False  # whether a task was forked by it

    def poll_ready(self, timeout: float = 0.0) -> bool | None:
        """Whether the server is ready, waiting at most ``timeout`` seconds: None while it is still starting."""
        if self.ready is None and select.select([self.sock], [], [], timeout)[0]:
            self._read_hello_answer()
        return self.ready

    def _read_hello_answer(self) -> None:
        message, _ = recv(self.sock)
        self.ready = bool(message) and message[0] == "ready"
        if not self.ready:
            self.close()

    def new_worker(self, tasks_per_process: int, on_exit: Any) -> Worker:
        """Fork a warm worker. Exits read meanwhile go to ``on_exit``."""
        from keel.runtime.executors.worker import Worker

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.used = True
        try:
            send(self.sock, ("worker", tasks_per_process), [theirs.fileno()])
        finally:
            theirs.close()
        while True:
            message, _ = recv(self.sock)
            if message is None:
                mine.close()
                raise OSError("the fork server ended")
            if message[0] == "started":
                return Worker(int(message[1]), mine)
            on_exit(message)

    def read(self) -> Any:
        """One message, after the selector said the socket is readable (None: the server ended)."""
        return recv(self.sock)[0]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        if not self.ready or not self.used:  # never used (or failed): nothing of it is worth waiting for
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)  # it ends (with its tasks) when it reads the end of the socket
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the server process -----------------------------------------------------------------------

def _serve(sock: socket.socket, scheduler_pid: int) -> None:
    import gc
    import traceback

    from keel.runtime.executors.local import _die_with_parent, _killpg

    _die_with_parent()
    if os.getppid() != scheduler_pid:
        return
    from keel.runtime.reaper import become_subreaper

    become_subreaper()  # a task killed from outside leaves its orphans here: collected after its reap
    hello, _ = recv(sock)
    if hello is None:
        return
    try:
        _, flow_file, flow_name, artifacts, sys_path = hello
        sys.path[:] = sys_path
        from keel.flow.loader import load_flow_file

        flow_cls = load_flow_file(flow_file, flow_name)
        import keel.runtime.task  # noqa: F401 - what every task runs, imported once here
        import keel.tracking.sysmetrics  # noqa: F401
        from keel.runtime.executors.worker import serve_tasks
    except BaseException:  # noqa: BLE001 - reported; the scheduler forks tasks itself
        try:
            send(sock, ("error", traceback.format_exc()))
        except OSError:
            pass
        return
    try:
        send(sock, ("ready",))
    except OSError:  # the scheduler closed the socket meanwhile: it needs no task from here
        return
    gc.collect()
    gc.freeze()  # what is here now is never garbage of a task: no collection copies its pages
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the scheduler, which decides
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, None)
    children: dict[int, int] = {}  # pid -> pidfd
    try:
        _loop(sock, sel, children, flow_cls, artifacts, serve_tasks)
    except OSError:  # the scheduler closed the socket while a worker's exit was being told: it is done
        pass
    for pid in children:  # the scheduler is done (or gone): nothing of ours outlives it
        _killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _loop(sock: socket.socket, sel: selectors.BaseSelector, children: dict[int, int], flow_cls: type,
          artifacts: Any, serve_tasks: Any) -> None:
    from keel.runtime.executors.local import _killpg
    from keel.runtime.reaper import collect_orphans

    me = os.getpid()
    while True:
        for key, _ in sel.select():
            if key.data is None:
                message, fds = recv(sock, with_fds=True)
                if message is None:
                    return
                _, tasks_per_process = message
                pid = os.fork()
                if pid == 0:  # pragma: no cover - runs in the worker
                    sock.close()
                    for fd in children.values():
                        os.close(fd)
                    serve_tasks(socket.socket(fileno=fds[0]), flow_cls, artifacts, me, tasks_per_process)
                os.close(fds[0])
                try:
                    os.setpgid(pid, pid)
                except OSError:
                    pass  # the child already did it, or already exited
                pidfd = os.pidfd_open(pid)
                children[pid] = pidfd
                sel.register(pidfd, selectors.EVENT_READ, pid)
                send(sock, ("started", pid))
            else:
                pid = key.data
                # What the worker started and left running ends with it, before the reap (the
                # group id cannot have been reused while the exited worker holds its pid).
                _killpg(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                sel.unregister(key.fd)
                os.close(children.pop(pid))
                send(sock, ("exit", pid, status))
                try:
                    collect_orphans(set(children))
                except Exception:  # noqa: BLE001 - cleaning up never stops the server
                    pass

if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2]))
