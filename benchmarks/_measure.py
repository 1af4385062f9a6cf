"""Run a command and measure its wall time and the peak memory of its whole process tree.

Peak memory is sampled, not traced: every ``interval`` seconds a thread sums the resident
set size (RSS) of the process and all its descendants, and keeps the largest sum seen.
RSS counts shared pages once per process, so a tree of forked workers can read a little
higher than the memory it really holds; both sides of every comparison are measured the
same way, which is what matters here.

Example::

    from _measure import measure
    m = measure([sys.executable, "flow.py", "run"], cwd=tmp, env=env)
    print(m.wall_s, m.peak_rss_bytes, m.returncode)
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence

import psutil

__all__ = ["Measurement", "measure", "tree_rss"]


@dataclasses.dataclass
class Measurement:
    """What one measured command did: its exit status, timings, memory and output."""

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    samples: int
    stdout: str
    stderr: str
    timed_out: bool = False
    peak_root_rss_bytes: int = 0  # the command's own process, without its descendants
    cpu_s: float = 0.0            # user + system CPU of the command and every descendant it reaped

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 30) -> str:
        """The last lines of stderr (or stdout when stderr is empty), for failure reports."""
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


def tree_rss(proc: psutil.Process) -> int:
    """Sum of RSS over ``proc`` and every descendant still alive; vanished ones count 0."""
    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass  # exited between listing and reading
    return total


class _PeakSampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak = 0
        self.root_peak = 0
        self.samples = 0
        try:
            self._proc: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._proc = None

    def run(self) -> None:
        if self._proc is None:
            return
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self._interval)

    def sample(self) -> None:
        if self._proc is None:
            return
        rss = tree_rss(self._proc)
        try:
            self.root_peak = max(self.root_peak, self._proc.memory_info().rss)
        except psutil.Error:
            pass
        self.samples += 1
        if rss > self.peak:
            self.peak = rss

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        members = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for member in members:
        try:
            member.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(members, timeout=10)


def measure(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    interval: float = 0.05,
) -> Measurement:
    """Run ``argv`` to completion; return its wall time and sampled peak tree RSS.

    Output goes to temporary files rather than pipes, so a chatty command can never block
    on a full pipe and distort the timing. On ``timeout`` the whole tree is killed and the
    measurement is returned with ``timed_out=True``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env) if env is not None else None, stdout=out, stderr=err
        )
        sampler = _PeakSampler(proc.pid, interval)
        sampler.sample()
        sampler.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc.pid)
            proc.wait()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        sampler.stop()
        out.seek(0)
        err.seek(0)
        return Measurement(
            argv=list(argv),
            returncode=proc.returncode,
            wall_s=wall,
            peak_rss_bytes=sampler.peak,
            samples=sampler.samples,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=timed_out,
            peak_root_rss_bytes=sampler.root_peak,
            cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        )
