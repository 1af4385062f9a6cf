"""A warm task process: forked by the fork server, it runs a run's step tasks one after another.

Forking a process for every task costs more than a trivial task's work: the fork itself, and
the copy-on-write faults of every page the task touches (Python writes a reference count on
each object it reads). A worker is forked once and runs up to ``KEEL_TASKS_PER_PROCESS`` tasks
(default 100; 1 gives every task a fresh process), each with what a forked task had:

- its stdout and stderr are the task's own pipes (received with the task, put on fds 1 and 2,
  and closed before the worker says the task is done, so the scheduler reads them to the end);
- the environment and working directory are the run's again before each task (what a task
  set with ``os.environ`` or ``os.chdir`` does not reach the next one), NumPy's and ``random``'s
  generators are seeded anew, and what the task started is killed when it ends;
- the worker is its own process group, dies with the fork server, and a timeout, ``kill``,
  a crash or ``os._exit`` in the step ends it (the fork server reports how, as for a task).

A worker is retired (it exits, and the next task gets a fresh one) after a task that failed,
was caught by ``@catch``, left a thread running, changed a signal handler, closed stdout or
stderr, opened a GPU (its device memory would stay with an idle worker), or grew the worker's
memory by more than 256 MB; and after its ``KEEL_TASKS_PER_PROCESS``-th task. Module
state (a global a step set, a module it imported) stays for the worker's later tasks, as in a
Ray worker.

Protocol (4-byte length + pickle, as the fork server's):
  scheduler -> worker: ("task", spec, env_or_None, cwd_or_None) + two fds (stdout, stderr)
  worker -> scheduler: ("done", result, retiring)
"""

from __future__ import annotations

import glob
import os
import random
import signal
import socket
import sys
import threading
from typing import Any, NoReturn

from keel.runtime.executors.forkserver import recv, send
from keel.runtime.executors.local import _HARNESS_FAILURE, _end_descendants, enter_task_process
from keel.runtime.executors.local import _reseed as _reseed_numpy

_GROWTH_MB = 256  # a worker whose memory grew this much over its start is retired
_GPU_DEVICES = "/dev/nvidia"  # CUDA (PyTorch, TensorFlow, JAX, CuPy) holds these open once initialised
_HANDLERS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM, signal.SIGCHLD, signal.SIGPIPE,
             signal.SIGUSR1, signal.SIGUSR2)


class Worker:
    """The scheduler's handle on one worker process."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self.sock = sock
        self.task: Any = None  # the executor's record (local._Child) of the task it runs now
        self._env: dict[str, str] | None = None
        self._cwd: str | None = None

    def run(self, spec: Any, out_w: int, err_w: int) -> None:
        """Send it ``spec`` with these pipes (raises OSError when the worker is gone)."""
        env, cwd = dict(os.environ), os.getcwd()
        send(self.sock, ("task", spec, env if env != self._env else None, cwd if cwd != self._cwd else None),
             [out_w, err_w])
        self._env, self._cwd = env, cwd

    def read(self) -> Any:
        """One message, after the selector said the socket is readable (None: the worker ended)."""
        try:
            return recv(self.sock)[0]
        except OSError:
            return None

    def close(self) -> None:
        try:
            self.sock.close()  # the worker exits when it reads the end of its socket
        except OSError:
            pass


# -- the worker process --------------------------------------------------------------------------

def serve_tasks(sock: socket.socket, flow_cls: type, store: Any, parent_pid: int, limit: int) -> NoReturn:
    """The worker's life: run the tasks the scheduler sends until it closes the socket or the
    worker retires. Never returns."""
    from keel.runtime.reaper import TASK_ENV
    from keel.runtime.task import run_task
    from keel.tracking.sysmetrics import rss_mb

    code = _HARNESS_FAILURE
    try:
        enter_task_process(parent_pid)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        out = sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        err = sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        handlers = [signal.getsignal(s) for s in _HANDLERS]
        start_mb = rss_mb()
        gpus = bool(glob.glob(_GPU_DEVICES + "[0-9]*"))  # no GPU here: nothing to look for after each task
        env: dict[str, str] = dict(os.environ)
        cwd = os.getcwd()
        ran = 0
        while True:
            message, fds = recv(sock, with_fds=True)
            if message is None:  # the run is over
                code = 0
                break
            _, spec, new_env, new_cwd = message
            if new_env is not None:
                env = {**new_env, TASK_ENV: str(os.getpid())}
            cwd = new_cwd or cwd
            _restore(env, cwd)
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            os.close(fds[0])
            os.close(fds[1])
            sys.stdout, sys.stderr = out, err
            _reseed()
            threads = threading.active_count()
            result = run_task(spec, flow_cls, store)
            _flush()
            _end_descendants()
            os.dup2(quiet, 1)  # the task's pipes close here: the scheduler reads them to the end
            os.dup2(quiet, 2)
            ran += 1
            retire = (not result.ok or result.caught or ran >= limit
                      or threading.active_count() > threads or out.closed or err.closed
                      or [signal.getsignal(s) for s in _HANDLERS] != handlers
                      or rss_mb() > start_mb + _GROWTH_MB or (gpus and has_open(_GPU_DEVICES)))
            send(sock, ("done", result, retire))
            if retire:
                code = 0
                break
    except BaseException:  # noqa: BLE001 - the machinery failed: say so on the task's stderr and leave
        import traceback

        try:
            os.write(2, ("keel: the task could not run:\n" + traceback.format_exc()).encode())
        except OSError:
            pass
    finally:
        _flush()
        _end_descendants()
        os._exit(code)


def has_open(prefix: str) -> bool:
    """Whether this process has a file open whose path starts with ``prefix``."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue  # the listing's own fd, closed by now
    return False


def _restore(env: dict[str, str], cwd: str) -> None:
    """The run's environment and working directory, as the previous task may have changed them."""
    if os.environ != env:
        os.environ.clear()
        os.environ.update(env)
    try:
        here = os.getcwd()
    except OSError:  # the task removed the folder it was in
        here = None
    if here != cwd:
        os.chdir(cwd)


def _reseed() -> None:
    """Each task starts with fresh random generators, as a new process does."""
    random.seed()
    _reseed_numpy()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:  # noqa: BLE001 - a closed or broken stream the task left
            pass
