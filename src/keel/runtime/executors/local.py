"""Local executor: tasks run in processes on this machine, never in a fresh interpreter.

Step tasks run in warm workers (worker.py) that a fork server (forkserver.py) forks: a worker
runs a run's tasks one after another, so a trivial task costs neither a fork nor the
copy-on-write faults of a new process. The first tasks of a run (before the fork server is
ready), command tasks (project jobs) and everything after the server's death are forked from
the scheduler, which has already imported the flow and its libraries. Either way a task's
process is its own process group and dies with the scheduler (PR_SET_PDEATHSIG), and its
stdout/stderr come back through pipes that the scheduler tees to the log store and the
console. A crash, ``os._exit`` or a signal in user code only ends that task (and its worker).
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import select
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.runtime.executors.base import Outcome, OutputSink, record_ending, signal_name
from keel.runtime.reaper import become_subreaper, kill_descendants, mark_task
from keel.runtime.task import TaskResult, TaskSpec, read_result, run_task, write_result
from keel.settings import Settings
from keel.store.artifacts import ArtifactStore

if TYPE_CHECKING:
    from keel.runtime.executors.worker import Worker

_PR_SET_PDEATHSIG = 1
_HARNESS_FAILURE = 70  # the child's own machinery failed before or after the user's code
_SERVER_START_WAIT = 5.0  # seconds an idle scheduler waits for its fork server to be ready
_SERVER_AFTER = 8  # by default the fork server starts with the run's 8th step task
_WORKER = "worker"  # the selector's mark on a warm worker's socket


@dataclass
class _Child:
    spec: TaskSpec
    pid: int
    pidfd: int
    pipes: dict[int, str] = field(default_factory=dict)  # fd -> "stdout" | "stderr"
    status: int | None = None
    worker: Worker | None = None            # the warm worker that runs it, if one does
    result: TaskResult | None = None        # what its worker sent back (a forked task writes result_path)


_libc: Any = None


def _load_libc() -> Any:
    """libc, opened once in the scheduler so that forked tasks do not dlopen it each."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return _libc


def _die_with_parent() -> None:
    libc = _load_libc()
    try:
        if libc:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except AttributeError:
        pass


def _child_main(spec: TaskSpec, flow_cls: type | None, store: ArtifactStore, out_w: int, err_w: int,
                parent_pid: int) -> None:
    """The forked task process. Never returns."""
    code = _HARNESS_FAILURE
    try:
        enter_task_process(parent_pid)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
        _reseed()
        if spec.command is not None:  # a command task: a shell line (exec, never returns) or a flow run
            from keel.runtime.command import exec_shell, run_flow

            if spec.command.kind == "shell":
                _run_shell(spec.command)  # never returns
            result = run_flow(spec.command, store)
        else:
            assert flow_cls is not None, "a step task needs its flow class"
            result = run_task(spec, flow_cls, store)
        write_result(spec.result_path, result)
        code = 0 if result.ok else 1
    except BaseException:  # noqa: BLE001 - report and leave: the scheduler explains it
        import traceback

        try:
            os.write(2, ("keel: the task could not run:\n" + traceback.format_exc()).encode())
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        _end_descendants()
        os._exit(code)


def enter_task_process(parent_pid: int) -> None:
    """What makes a freshly forked process a task process (a task, or a warm worker)."""
    # What the parent allocated is never garbage of this task: keep the collector off it,
    # so that a collection here does not write to (and copy) every inherited page.
    gc.freeze()
    os.setpgid(0, 0)
    _die_with_parent()
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        os._exit(_HARNESS_FAILURE)
    become_subreaper(_load_libc())  # what the task starts and detaches (setsid, double fork) stays its own
    mark_task()  # ... and if this task is killed from outside, the scheduler knows whose it was
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)


def _end_descendants() -> None:
    try:
        kill_descendants()
    except BaseException:  # noqa: BLE001 - never keep the task from exiting
        pass


def _run_shell(command: Any) -> None:
    """A shell job: the shell runs in a child, so this process (the subreaper) is still there
    when it ends to kill what it left behind. Exits as the shell did (same code or signal)."""
    from keel.runtime.command import exec_shell

    pid = os.fork()
    if pid == 0:
        try:
            exec_shell(command)
        finally:
            os._exit(127)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))  # pass a polite stop on
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    _end_descendants()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot have a handler
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _reseed() -> None:
    """Forked children share the parent's random state; give each its own, as a new process has."""
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed(int.from_bytes(os.urandom(4), "little"))
        except Exception:  # noqa: BLE001
            pass


def describe_exit(status: int, pid: int | None = None) -> tuple[int | None, int | None, str]:
    """(exit code, signal, words) for a waitpid status. With ``pid``, a SIGKILL is checked
    against the kernel log to tell the out-of-memory killer from a kill by another process."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal_name(sig)
        hint = ""
        if sig == signal.SIGKILL:
            from keel.runtime.oom import killed_by_oom

            oom = killed_by_oom(pid) if pid is not None else None
            if oom:
                return None, sig, ("the task process was killed by the out-of-memory killer (SIGKILL): it "
                                   "needed more memory than the machine or its memory limit allows. Use less "
                                   "memory in the step, or run it where there is more")
            hint = (" (sent by another process, not by the out-of-memory killer)" if oom is False
                    else " (the out-of-memory killer sends this when memory runs out)")
        return None, sig, f"the task process was killed by {name}{hint}"
    code = os.WEXITSTATUS(status)
    if code == _HARNESS_FAILURE:
        return code, None, "the task process failed before it could report (see its stderr)"
    return code, None, f"the task process exited with status {code} before it finished (os._exit or sys.exit?)"


class LocalExecutor:
    """Runs each task in a warm worker or a forked process on this machine (see the module docstring)."""

    name = "local"

    def __init__(self, flow_cls: type | None, artifacts: ArtifactStore, on_output: OutputSink):
        self.flow_cls = flow_cls
        self.artifacts = artifacts
        self.on_output = on_output
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, _Child] = {}       # pid -> child
        self.by_task: dict[tuple[int, int], _Child] = {}
        self.hostname = socket.gethostname()
        self._exited: list[_Child] = []
        self._guard: Any = None  # kills what tasks started if this process dies (guard.py)
        self._server_registered = False
        self._server: Any = None  # the fork server for step tasks (forkserver.py), once started
        # KEEL_FORK_SERVER=1: started now, so that it warms up while the run is set up. By
        # default ("auto") it starts at the _SERVER_AFTER-th step task: a run of a few tasks
        # (a resume, a short flow) does not pay for a second interpreter it would not win back.
        # A step task waits for it only while no other task runs (at most _SERVER_START_WAIT s),
        # else it is forked from here; a server that forked nothing is killed at the end.
        settings = Settings.from_env()
        mode = settings.fork_server
        self._tasks_per_process = settings.tasks_per_process
        self._workers: dict[int, Worker] = {}  # pid -> worker, busy or idle
        self._idle: list[Worker] = []
        self._server_failed = flow_cls is None or mode == "off"
        self._server_after = 0 if mode == "on" else _SERVER_AFTER
        self._step_tasks = 0
        if not self._server_failed and self._server_after == 0:
            self._start_server()

    def _start_server(self) -> None:
        from keel.runtime.executors.forkserver import ForkServer

        try:
            import pickle

            pickle.dumps(self.artifacts)  # an S3 store's client, say, does not travel: fork as before
            self._server = ForkServer(self.flow_cls, self.artifacts)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - tasks are forked from here instead
            self._server_failed = True
            self._server = None

    def _use_server(self, spec: TaskSpec) -> bool:
        if spec.command is not None or self._server_failed:
            return False
        self._step_tasks += 1
        if self._server is None:
            if self._step_tasks >= self._server_after:
                self._start_server()  # ready for a later task; this one is forked from here
            return False
        ready = self._server.poll_ready(0.0 if self.children else _SERVER_START_WAIT)
        if ready is None:
            return False  # still starting: this task is forked from here
        if not ready:
            self._server, self._server_failed = None, True
            return False
        return True

    def submit(self, spec: TaskSpec) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is None:
                continue
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        if self._guard is None:
            from keel.runtime.executors.guard import TaskGuard

            self._guard = TaskGuard()
            become_subreaper(_load_libc())  # a task killed from outside leaves its orphans here (_collect_orphans)
        if self._use_server(spec):
            try:
                worker = self._send_to_worker(spec, out_w, err_w)
            except OSError:
                self._server_gone()
                os.close(out_r)
                os.close(err_r)
                self.submit(spec)  # forked from here, as without a server
                return
            os.close(out_w)
            os.close(err_w)
            child = worker.task = _Child(spec=spec, pid=worker.pid, pidfd=-1, worker=worker)
        else:
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                os.close(out_r)
                os.close(err_r)
                _child_main(spec, self.flow_cls, self.artifacts, out_w, err_w, parent)
            os.close(out_w)
            os.close(err_w)
            try:
                os.setpgid(pid, pid)
            except OSError:
                pass  # the child already did it, or already exited
            child = _Child(spec=spec, pid=pid, pidfd=os.pidfd_open(pid))
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            child.pipes[fd] = stream
            self.selector.register(fd, selectors.EVENT_READ, (child, stream))
        if child.pidfd >= 0:
            self.selector.register(child.pidfd, selectors.EVENT_READ, (child, None))
        elif not self._server_registered:
            self.selector.register(self._server.sock, selectors.EVENT_READ, (None, None))
            self._server_registered = True
        self.children[child.pid] = child
        self.by_task[(spec.task_id, spec.attempt)] = child
        self._guard.watch(child.pid)

    def _send_to_worker(self, spec: TaskSpec, out_w: int, err_w: int) -> Worker:
        """An idle worker (or a new one from the fork server) that now runs ``spec``. OSError:
        the fork server is gone."""
        while self._idle:
            worker = self._idle.pop()
            try:
                worker.run(spec, out_w, err_w)
                return worker
            except OSError:  # it ended while idle (killed from outside?): its exit is reported
                self._drop_worker(worker)
        fresh: Worker = self._server.new_worker(self._tasks_per_process, self._on_server_message)
        self._workers[fresh.pid] = fresh
        self.selector.register(fresh.sock, selectors.EVENT_READ, (fresh, _WORKER))
        fresh.run(spec, out_w, err_w)
        return fresh

    def _on_worker(self, worker: Worker) -> None:
        """The worker says its task is done, or it ended (its task's end then comes with its exit)."""
        message = worker.read()
        if message is None or message[0] != "done":
            self._stop_listening(worker)
            if worker.task is None:
                self._drop_worker(worker)
            return
        _, result, retiring = message
        child, worker.task = worker.task, None
        if retiring:
            self._drop_worker(worker)
        else:
            self._idle.append(worker)
        if child is not None and child.status is None:
            child.result = result
            self._reap(child, 0 if result.ok else 1 << 8)  # a waitpid status: exit 0, or 1

    def _drop_worker(self, worker: Worker) -> None:
        if self._workers.pop(worker.pid, None) is None:
            return
        if worker in self._idle:
            self._idle.remove(worker)
        self._stop_listening(worker)

    def _stop_listening(self, worker: Worker) -> None:
        try:
            self.selector.unregister(worker.sock)
        except (KeyError, ValueError):
            pass
        worker.close()

    def running(self) -> int:
        return len(self.children)

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.children:
            if timeout > 0:
                time.sleep(timeout)
            return []
        for key, _ in self.selector.select(max(timeout, 0)):
            child, stream = key.data
            if child is None:  # the fork server: a worker's exit, or its own end
                message = self._server.read() if self._server is not None else None
                if message is None:
                    self._server_gone()
                else:
                    self._on_server_message(message)
            elif stream is _WORKER:
                if child.pid in self._workers:
                    self._on_worker(child)
            elif stream is None:
                if child.status is None:
                    self._reap(child)
            elif key.fd in child.pipes:
                self._read(child, key.fd)
        done, self._exited = self._exited, []
        return [self._outcome(child) for child in done]

    def _read(self, child: _Child, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EBADF:
                self._close_pipe(child, fd)
            return
        if data:
            self.on_output(child.spec, child.pipes[fd], data)
        else:
            self._close_pipe(child, fd)

    def _close_pipe(self, child: _Child, fd: int) -> None:
        self.selector.unregister(fd)
        os.close(fd)
        child.pipes.pop(fd, None)

    def _on_server_message(self, message: Any) -> None:
        if message[0] != "exit":
            return
        worker = self._workers.get(message[1])
        if worker is None:  # retired, or ended idle and already dropped
            return
        if worker.task is not None and worker.sock.fileno() >= 0 and select.select([worker.sock], [], [], 0)[0]:
            self._on_worker(worker)  # it said "done" before it ended: the task's outcome is that
        child, worker.task = worker.task, None
        self._drop_worker(worker)
        if child is not None and child.status is None:
            self._reap(child, message[2])  # the worker ended while it ran the task: a crash, a kill

    def _server_gone(self) -> None:
        """The fork server ended (killed?): its tasks are gone with it; fork from here from now on."""
        server, self._server, self._server_failed = self._server, None, True
        if server is None:
            return
        if self._server_registered:
            self.selector.unregister(server.sock)
            self._server_registered = False
        server.close()
        for worker in list(self._workers.values()):
            self._drop_worker(worker)  # they die with the server
        for child in list(self.children.values()):
            if child.pidfd < 0 and child.status is None:
                _killpg(child.pid, signal.SIGKILL)
                self._reap(child, signal.SIGKILL)  # a waitpid status: killed by SIGKILL

    def _reap(self, child: _Child, status: int | None = None) -> None:
        forked_here = status is None
        if status is None:
            # What the task started and left running ends with it. Killed before the reap, while
            # the exited task still holds its pid, so the group id cannot have been reused.
            # (The fork server does the same for its tasks and sends ``status``.)
            _killpg(child.pid, signal.SIGKILL)
            _, status = os.waitpid(child.pid, 0)
            self.selector.unregister(child.pidfd)
            os.close(child.pidfd)
        if self._guard is not None:
            self._guard.forget(child.pid)
        child.status = status
        for fd in list(child.pipes):
            self._drain(child, fd)
        del self.children[child.pid]
        self.by_task.pop((child.spec.task_id, child.spec.attempt), None)
        self._exited.append(child)
        if forked_here:  # a task killed from outside (or that called os._exit) left its orphans here
            self._collect_orphans()

    def _collect_orphans(self) -> None:
        """Kill what tasks that ended left behind and this process adopted (reaper.collect_orphans)."""
        from keel.runtime.reaper import collect_orphans

        try:
            collect_orphans(set(self.children))
        except Exception:  # noqa: BLE001 - cleaning up never stops the run
            pass

    def _drain(self, child: _Child, fd: int) -> None:
        """Read what an exited task left in a pipe. Stop at EOF or when nothing more is there
        now (a grandchild may still hold the pipe open: do not wait for it)."""
        stream = child.pipes[fd]
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                break
            if not data:
                break
            self.on_output(child.spec, stream, data)
        self._close_pipe(child, fd)

    def _outcome(self, child: _Child) -> Outcome:
        assert child.status is not None
        if child.worker is not None:
            result = child.result
        else:
            result = read_result(child.spec.result_path)
            try:
                os.unlink(child.spec.result_path)
            except FileNotFoundError:
                pass
        code, sig, words = describe_exit(child.status, child.pid)
        command = child.spec.command
        if command is not None and command.kind == "shell":
            from keel.runtime.command import command_result

            result = command_result(command, code)
            words = f"exited with status {code}" if code is not None else words
        outcome = Outcome(spec=child.spec, result=result, exit_code=code, signal=sig,
                          reason=None if result is not None else words, node=self.hostname)
        return record_ending(self.on_output, outcome, words)

    def _kill_tree(self, pid: int) -> None:
        """Kill what the task started and detached (it is the subreaper of its tree), then the task."""
        kill_descendants(pid, deadline_s=1.0)

    def kill(self, spec: TaskSpec) -> None:
        child = self.by_task.get((spec.task_id, spec.attempt))
        if child is not None:
            self._kill_tree(child.pid)
            _killpg(child.pid, signal.SIGKILL)

    def shutdown(self, grace: float = 2.0) -> list[Outcome]:
        """Stop every task (SIGTERM, then SIGKILL after ``grace`` seconds) and reap them all."""
        for child in list(self.children.values()):
            self._kill_tree(child.pid)
            _killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        outcomes: list[Outcome] = []
        while self.children and time.monotonic() < deadline:
            outcomes += self.wait(0.05)
        for child in list(self.children.values()):
            _killpg(child.pid, signal.SIGKILL)
        while self.children:
            outcomes += self.wait(0.05)
        return outcomes  # the caller closes the executor (once, after this)

    def close(self) -> None:
        """The run is over: release the workers, the fork server, the guard process and the selector."""
        for worker in list(self._workers.values()):
            self._drop_worker(worker)
        if self._server is not None:
            server, self._server = self._server, None
            try:
                if self._server_registered:
                    self.selector.unregister(server.sock)
            except (KeyError, ValueError, OSError, RuntimeError):
                pass
            self._server_registered = False
            server.close()
        if self._guard is not None:
            self._guard.close()
            self._guard = None
        self.selector.close()


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def machine_budget() -> dict[str, Any]:
    """The cores, memory (MB) and GPUs tasks with @resources may share on this machine."""
    return {"cpu": os.cpu_count() or 1, "memory": _total_memory() // (1024 * 1024), "gpu": machine_gpus()}


def _total_memory() -> int:
    """The machine's memory in bytes: sysconf where it answers (Linux, macOS: what psutil reports
    as ``virtual_memory().total``), psutil elsewhere, so a run does not import psutil (~20 ms)."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        pages = size = -1
    if pages > 0 and size > 0:
        return int(pages * size)
    import psutil

    return int(psutil.virtual_memory().total)


def machine_gpus() -> int:
    """NVIDIA GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else the /dev/nvidiaN devices."""
    import glob

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len(glob.glob("/dev/nvidia[0-9]*"))
