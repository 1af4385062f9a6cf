"""``keel serve --log-requests``: served requests appended to a Data Engine table.

A request hands its record to :meth:`RequestLog.record`, which only puts it on a bounded
queue (never blocks, never raises: when the queue is full the record is dropped and
counted). A background thread turns what has queued into one Arrow table and appends it as
a new version of the table every ``flush_seconds`` (and once more at shutdown), so monitoring
reads ``keel.data.load("Train_requests")`` or ``keel data sql``. A failing write is logged
and the batch dropped; the endpoint goes on serving.

Columns: ``time`` (UTC timestamp), ``run`` ("Flow/7"), ``route``, ``request_id``,
``latency_ms``, ``rows`` (instances in the request), ``inputs`` and ``predictions`` (JSON
text, so the table's schema does not depend on the model's features).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.data.engine import DataEngine

__all__ = ["RequestLog", "RequestRecord", "default_table"]

log = logging.getLogger("keel.serve")


def default_table(endpoint: str) -> str:
    """``<endpoint>_requests`` as a valid table name (anything but letters, digits, '_' becomes '_')."""
    name = re.sub(r"\W", "_", endpoint, flags=re.ASCII) + "_requests"
    return name if not name[0].isdigit() else "_" + name


@dataclass(frozen=True)
class RequestRecord:
    """One served request, as the route saw it."""

    time: float
    run: str
    route: str
    request_id: str
    latency_ms: float
    inputs: Any
    predictions: Any


class RequestLog:
    """A bounded queue of records and the thread that appends them to ``table`` in batches."""

    def __init__(self, table: str, engine: "DataEngine | None" = None, *, flush_seconds: float = 1.0,
                 max_pending: int = 100_000):
        self.table = table
        self.flush_seconds = flush_seconds
        self.dropped = 0
        self.written = 0
        self._engine = engine
        self._queue: queue.Queue[RequestRecord] = queue.Queue(maxsize=max_pending)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, rec: RequestRecord) -> None:
        """Queue ``rec`` for the next batch; drops it (and counts) when the queue is full."""
        try:
            self._queue.put_nowait(rec)
        except queue.Full:
            self.dropped += 1

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="keel-request-log", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()
        self.flush()

    def flush(self) -> int:
        """Append what is queued now as one version; return the rows written (0 on failure)."""
        batch: list[RequestRecord] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return 0
        try:
            engine = self._engine_now()
            engine.save(self.table, _to_arrow(batch), mode="append")
        except Exception:  # the log must never take the endpoint down
            log.exception("keel serve: could not append %d request(s) to the table %s; they are dropped",
                          len(batch), self.table)
            self.dropped += len(batch)
            return 0
        self.written += len(batch)
        return len(batch)

    def _engine_now(self) -> "DataEngine":
        if self._engine is None:
            from keel.data.engine import DataEngine

            self._engine = DataEngine.from_env(lineage=None)
        return self._engine


def _json(value: Any) -> str:
    try:
        return json.dumps(value, default=str, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(str(value))


def _to_arrow(batch: list[RequestRecord]) -> Any:
    import pyarrow as pa

    def rows(value: Any) -> int:
        return len(value) if isinstance(value, list) else 1

    return pa.table({
        "time": pa.array([int(r.time * 1_000_000) for r in batch], pa.timestamp("us", tz="UTC")),
        "run": pa.array([r.run for r in batch], pa.string()),
        "route": pa.array([r.route for r in batch], pa.string()),
        "request_id": pa.array([r.request_id for r in batch], pa.string()),
        "latency_ms": pa.array([r.latency_ms for r in batch], pa.float64()),
        "rows": pa.array([rows(r.inputs) for r in batch], pa.int64()),
        "inputs": pa.array([_json(r.inputs) for r in batch], pa.string()),
        "predictions": pa.array([_json(r.predictions) for r in batch], pa.string()),
    })
