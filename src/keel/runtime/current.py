"""``current``: what a running task knows about itself, and its tracking calls.

    from keel import current
    current.run_id, current.step_name, current.pathspec
    current.log_metric("loss", 0.3, step=10)
    current.tag("baseline")

Metrics are buffered in memory and written to a spool file that the scheduler ingests:
a tight loop can log hundreds of thousands of points a second, and a timer flushes the
buffer so points logged before a crash are kept.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import time
from typing import Any

from keel.errors import KeelError

_FLUSH_EVERY_POINTS = 100_000
_FLUSH_EVERY_SECONDS = 1.0

# One spool record: name id (H), has-step flag (B), step (q), value (d), timestamp (d).
_RECORD = struct.Struct("<HBqdd")


class MetricSpool:
    """Append-only binary file of metric points, written by one task, read by the scheduler.

    Layout: records of ``_RECORD``; a record with name id 0xFFFF introduces a new name whose
    UTF-8 bytes follow (length in the step field). Partial trailing records are ignored.
    """

    NEW_NAME = 0xFFFF

    def __init__(self, path: str):
        self.path = path
        self._names: dict[str, int] = {}
        self._buffer: list[tuple[str, int | None, float, float]] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._timer: threading.Thread | None = None
        self._closed = False

    def add(self, name: str, value: float, step: int | None) -> None:
        self._buffer.append((name, step, value, time.time()))
        if len(self._buffer) >= _FLUSH_EVERY_POINTS:
            self.flush()
        elif self._timer is None:
            self._start_timer()

    def _start_timer(self) -> None:
        def tick() -> None:
            while not self._closed:
                time.sleep(_FLUSH_EVERY_SECONDS)
                if self._buffer:
                    self.flush()

        self._timer = threading.Thread(target=tick, name="keel-metrics-flush", daemon=True)
        self._timer.start()

    def flush(self) -> None:
        with self._lock:
            points, self._buffer = self._buffer, []
            if not points:
                return
            out = bytearray()
            pack = _RECORD.pack
            for name, step, value, ts in points:
                nid = self._names.get(name)
                if nid is None:
                    nid = self._names[name] = len(self._names)
                    raw = name.encode()
                    out += pack(self.NEW_NAME, 0, len(raw), 0.0, 0.0) + raw
                out += pack(nid, step is not None, step or 0, value, ts)
            with open(self.path, "ab") as fh:
                fh.write(out)
            self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._closed = True

    @classmethod
    def read(cls, path: str) -> list[tuple[str, int | None, float, float]]:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return []
        names: list[str] = []
        points = []
        size = _RECORD.size
        pos = 0
        while pos + size <= len(data):
            nid, has_step, step, value, ts = _RECORD.unpack_from(data, pos)
            pos += size
            if nid == cls.NEW_NAME:
                if pos + step > len(data):
                    break
                names.append(data[pos:pos + step].decode())
                pos += step
                continue
            if nid < len(names):
                points.append((names[nid], step if has_step else None, value, ts))
        return points


class Current:
    """The running task's identity and tracking calls. Outside a task every id is None."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.flow_name: str | None = None
        self.run_id: int | None = None
        self.step_name: str | None = None
        self.task_id: int | None = None
        self.retry_count: int = 0
        self.origin_run_id: int | None = None
        self.is_running_flow = False
        self._spool: MetricSpool | None = None
        self._tags: list[str] = []
        self._extras: dict[str, Any] = {}

    def _activate(self, *, flow_name: str, run_id: int, step_name: str, task_id: int, retry_count: int,
                  metrics_path: str | None, **extras: Any) -> None:
        self._reset()
        self.flow_name, self.run_id, self.step_name = flow_name, run_id, step_name
        self.task_id, self.retry_count = task_id, retry_count
        self.is_running_flow = True
        self._spool = MetricSpool(metrics_path) if metrics_path else None
        self._extras = extras

    def __getattr__(self, name: str) -> Any:
        extras = self.__dict__.get("_extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(f"current has no attribute {name!r}")

    @property
    def pathspec(self) -> str | None:
        if self.flow_name is None:
            return None
        return f"{self.flow_name}/{self.run_id}/{self.step_name}/{self.task_id}"

    def _need_task(self, what: str) -> MetricSpool:
        if self._spool is None:
            raise KeelError(f"current.{what}() works only inside a running step or job")
        return self._spool

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record one point of metric ``name`` (optionally at training ``step``)."""
        spool = self._need_task("log_metric")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise KeelError(f"log_metric({name!r}, {value!r}): the value must be a number") from None
        if step is not None:
            step = int(step)
        if math.isnan(value):
            value = float("nan")
        spool.add(name, value, step)

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Record several metrics at once: ``current.log_metrics({"loss": l, "acc": a}, step=i)``."""
        for name, value in values.items():
            self.log_metric(name, value, step)

    def tag(self, *tags: str) -> None:
        """Add tags to the run this task belongs to."""
        self._need_task("tag")
        for t in tags:
            if not isinstance(t, str) or not t:
                raise KeelError(f"a tag must be a non-empty string, got {t!r}")
            self._tags.append(t)

    def _finish(self) -> list[str]:
        if self._spool is not None:
            self._spool.close()
        return list(self._tags)


current = Current()


def _after_fork_in_child() -> None:
    # A forked process (e.g. a parallel_map worker) gets a fresh lock and its own timer.
    spool = current.__dict__.get("_spool")
    if spool is not None:
        spool._lock = threading.Lock()
        spool._timer = None


os.register_at_fork(after_in_child=_after_fork_in_child)
