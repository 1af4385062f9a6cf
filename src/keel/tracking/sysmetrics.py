"""System metrics of a task: its CPU use and memory, sampled while it runs.

A ``Sampler`` thread inside the task process writes ``sys.cpu_percent`` and ``sys.rss_mb``
every second (``KEEL_SYSTEM_METRICS_EVERY``) through a metric spool of its own, so it works
on any executor; when the task ends it adds ``sys.peak_rss_mb`` (the task's high-water
mark) and ``sys.cpu_time_s`` (user + system seconds, its waited-for children included).
It costs a task about 1 ms in all (measured on a forked task); ``KEEL_SYSTEM_METRICS=0``
turns it off.

On Unix the numbers come from ``getrusage`` (CPU time, peak memory) and, on Linux,
``/proc/self/statm`` (memory now): what psutil reads too, without its 35 ms import in every
task; elsewhere from psutil and ``os.times()``.
"""

from __future__ import annotations

import _thread
import os
import sys
import time
from typing import Any

from keel.settings import Settings

try:  # imported with the module: a task forked from the scheduler or the fork server has it already
    import resource
except ImportError:  # not Unix
    resource = None  # type: ignore[assignment]

PREFIX = "sys."
CPU_PERCENT, RSS_MB = "sys.cpu_percent", "sys.rss_mb"
PEAK_RSS_MB, CPU_TIME_S = "sys.peak_rss_mb", "sys.cpu_time_s"
_FIRST_SAMPLE_AFTER = 0.02  # seconds
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


def _cpu_seconds() -> float:
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    try:
        return int(_read_proc("/proc/self/statm").split()[1]) * _PAGE_MB
    except (OSError, IndexError, ValueError):
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def _read_proc(path: str) -> bytes:
    """A small /proc file in three system calls (``open()`` makes nine: fstat, ioctl, lseek...);
    a task reads one a few times, and a trivial task's cost is counted in such calls."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _usage() -> tuple[float, float | None]:
    """(CPU seconds of this process and its waited-for children, its peak RSS in MB or None),
    from two getrusage calls: what /proc/self/status and os.times() tell, for a fraction of
    the cost in a freshly forked task (fewer pages touched, no file opened)."""
    if resource is None:  # not Unix
        return _cpu_seconds(), None
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return cpu, me.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)   # bytes on macOS, KB elsewhere


def _reset_peak() -> None:
    """Start the high-water mark again from here (``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


class Sampler:
    """Samples this process every ``every`` seconds into ``spool`` (a ``MetricSpool``).

    The thread is started without waiting for it and takes its first sample after 20 ms (a
    task of a millisecond pays only for the last sample, in ``stop``); it is never joined: ``stop`` marks it stopped under a lock, so no sample is written
    after the task's last one. It waits on a bare lock that ``stop`` releases (a
    ``threading.Event`` costs a short forked task more pages than the wait is worth).
    """

    def __init__(self, spool: Any, every: float | None = None):
        self.spool = spool
        self.every = every if every is not None else Settings.from_env().system_metrics_every
        self._wake = _thread.allocate_lock()
        self._wake.acquire()   # held until stop(): the sampling thread waits on it with a timeout
        self._guard = _thread.allocate_lock()
        self._stopped = False
        self._n = 0
        self._peak = 0.0
        cpu, self._inherited_peak = _usage()
        self._last: tuple[float, float] = (time.monotonic(), cpu)
        self._cpu0 = self._last[1]  # a warm worker's earlier tasks are not this task's CPU time

    def start(self) -> "Sampler":
        # A task forked from a big process may have inherited its high-water mark (kernels
        # differ): start it again from here only then, as the reset costs a short task ~0.3 ms.
        peak = self._inherited_peak
        if peak is not None and peak > 1.25 * rss_mb() + 16:
            _reset_peak()
        _thread.start_new_thread(self._loop, ())
        return self

    def _loop(self) -> None:
        # The first sample is taken once the task has lived _FIRST_SAMPLE_AFTER seconds: a
        # trivial task ends before it and pays for one sample (in stop), not two.
        wait = min(self.every, _FIRST_SAMPLE_AFTER)
        while not self._wake.acquire(timeout=wait):
            wait = self.every
            with self._guard:
                if self._stopped:
                    return
                self._sample()

    def _sample(self, final: bool = False) -> float:
        now = time.monotonic()
        cpu, peak = _usage()
        then, cpu_then = self._last
        rss = rss_mb()
        self._peak = max(self._peak, rss, peak or 0.0)
        if self._n or final:
            self.spool.add(CPU_PERCENT, 100.0 * (cpu - cpu_then) / max(now - then, 1e-6), self._n)
        self.spool.add(RSS_MB, rss, self._n)
        self._last = (now, cpu)
        self._n += 1
        return cpu

    def stop(self, into: list[tuple[str, int | None, float, float]] | None = None) -> None:
        """The last sample, then the peak memory and the CPU time of the whole task: into the
        spool, or appended to ``into`` as spool points ``(name, step, value, time)`` (the task
        body returns them with its result: a task that logs nothing then writes no spool file)."""
        with self._guard:
            if self._stopped:
                return
            self._stopped = True
            self._wake.release()
            spool = self.spool
            if into is not None:
                self.spool = _Points(into)
            cpu = self._sample(final=True)
            self.spool.add(PEAK_RSS_MB, self._peak, None)
            self.spool.add(CPU_TIME_S, cpu - self._cpu0, None)
            self.spool = spool


class _Points:
    """Takes ``add`` calls as a spool does, into a list of spool points."""

    def __init__(self, points: list[tuple[str, int | None, float, float]]):
        self.points = points

    def add(self, name: str, value: float, step: int | None) -> None:
        self.points.append((name, step, value, time.time()))


def task_resources(metadata: Any, flow: str, run_id: int) -> dict[int, dict[str, float]]:
    """Peak memory (MB) and CPU seconds of each task of a run: task id -> {"peak_rss_mb", "cpu_time_s"}."""
    out: dict[int, dict[str, float]] = {}
    for task_id, name, value in metadata.metrics.max_per_task(flow, run_id, [PEAK_RSS_MB, CPU_TIME_S, RSS_MB]):
        row = out.setdefault(task_id, {})
        if name in (RSS_MB, PEAK_RSS_MB):  # a task killed before its end keeps the peak of its samples
            row["peak_rss_mb"] = max(row.get("peak_rss_mb", 0.0), value)
        else:
            row["cpu_time_s"] = value
    return out
