"""Local executor: each task is a process forked from the warm scheduler.

The scheduler has already imported the flow and its libraries, so a task starts in about a
millisecond instead of paying a fresh interpreter and re-imports (what makes Metaflow's local
runtime slow). Each task gets its own process group, dies with the scheduler (PR_SET_PDEATHSIG),
and its stdout/stderr come back through pipes that the scheduler tees to the log store and
the console. A crash, ``os._exit`` or a signal in user code only ends that task.
"""

from __future__ import annotations

import ctypes
import errno
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from keel.runtime.executors.base import Outcome, OutputSink
from keel.runtime.task import TaskSpec, read_result, run_task, write_result
from keel.store.artifacts import ArtifactStore

_PR_SET_PDEATHSIG = 1
_HARNESS_FAILURE = 70  # the child's own machinery failed before or after the user's code


@dataclass
class _Child:
    spec: TaskSpec
    pid: int
    pidfd: int
    pipes: dict[int, str] = field(default_factory=dict)  # fd -> "stdout" | "stderr"
    status: int | None = None


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _child_main(spec: TaskSpec, flow_cls: type | None, store: ArtifactStore, out_w: int, err_w: int,
                parent_pid: int) -> None:
    """The forked task process. Never returns."""
    code = _HARNESS_FAILURE
    try:
        os.setpgid(0, 0)
        _die_with_parent()
        if os.getppid() != parent_pid:  # the scheduler died between fork and prctl
            os._exit(_HARNESS_FAILURE)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
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
                exec_shell(spec.command)
            result = run_flow(spec.command, store)
        else:
            assert flow_cls is not None, "a step task needs its flow class"
            result = run_task(spec, flow_cls, store)
        write_result(spec.result_path, result)
        code = 0 if result.get("ok") else 1
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
        os._exit(code)


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
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
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
    """Runs each task in a forked process on this machine."""

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
        self.selector.register(child.pidfd, selectors.EVENT_READ, (child, None))
        self.children[pid] = child
        self.by_task[(spec.task_id, spec.attempt)] = child
        self._guard.watch(pid)

    def running(self) -> int:
        return len(self.children)

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.children:
            if timeout > 0:
                time.sleep(timeout)
            return []
        for key, _ in self.selector.select(max(timeout, 0)):
            child, stream = key.data
            if stream is None:
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

    def _reap(self, child: _Child) -> None:
        # What the task started and left running ends with it. Killed before the reap, while
        # the exited task still holds its pid, so the group id cannot have been reused.
        _killpg(child.pid, signal.SIGKILL)
        _, status = os.waitpid(child.pid, 0)
        if self._guard is not None:
            self._guard.forget(child.pid)
        child.status = status
        self.selector.unregister(child.pidfd)
        os.close(child.pidfd)
        for fd in list(child.pipes):
            self._drain(child, fd)
        del self.children[child.pid]
        self.by_task.pop((child.spec.task_id, child.spec.attempt), None)
        self._exited.append(child)

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
        return Outcome(spec=child.spec, result=result, exit_code=code, signal=sig,
                       reason=None if result is not None else words, node=self.hostname)

    def kill(self, spec: TaskSpec) -> None:
        child = self.by_task.get((spec.task_id, spec.attempt))
        if child is not None:
            _killpg(child.pid, signal.SIGKILL)

    def shutdown(self, grace: float = 2.0) -> list[Outcome]:
        """Stop every task (SIGTERM, then SIGKILL after ``grace`` seconds) and reap them all."""
        for child in list(self.children.values()):
            _killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        outcomes: list[Outcome] = []
        while self.children and time.monotonic() < deadline:
            outcomes += self.wait(0.05)
        for child in list(self.children.values()):
            _killpg(child.pid, signal.SIGKILL)
        while self.children:
            outcomes += self.wait(0.05)
        self.selector.close()
        self.close()
        return outcomes

    def close(self) -> None:
        """The run is over: release the guard process."""
        if self._guard is not None:
            self._guard.close()
            self._guard = None


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
    """The cores and memory (MB) tasks with @resources may share on this machine."""
    import psutil

    return {"cpu": os.cpu_count() or 1, "memory": psutil.virtual_memory().total // (1024 * 1024)}
