"""Serving metrics in Prometheus' text format: request counts, a latency histogram, batch sizes.

Every value lives in a small memory-mapped table of (key, float64) records, updated in place
(a few microseconds a request). With ``--workers N`` each worker's table is a file
``PID.metrics`` in one folder that the server made, so whichever worker answers ``/metrics``
sums every worker's counters and histograms, as Prometheus' multiprocess mode does; a worker
that died keeps its counts (counters never go down), and only living workers count towards
the in-flight gauge. With one process the table is anonymous memory.
"""

from __future__ import annotations

import mmap
import os
import struct
from bisect import bisect_left
from pathlib import Path
from typing import Callable

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_HEADER = struct.Struct("<Q")         # bytes used, records included; written after each record
_LENGTH = struct.Struct("<I")
_VALUE = struct.Struct("<d")
_SUFFIX = ".metrics"


class ValueTable:
    """One process's values: records ``[u32 key length][key, padded to 8][f64 value]`` after a header.

    A record is written before the header counts it, so a reader in another process never
    sees half of one. Keys are only ever appended; values are changed in place."""

    def __init__(self, path: Path | None = None, size: int = 1 << 16):
        self.path = path
        self._file = open(path, "w+b") if path is not None else None
        self._size = 0
        self._mm: mmap.mmap | None = None
        self._doubles: memoryview[float] | None = None   # the map as float64s: records are 8-byte aligned
        self._offsets: dict[str, int] = {}        # key -> index of its value in _doubles
        self._used = _HEADER.size
        self._map(size)
        _HEADER.pack_into(self._buf, 0, self._used)

    @property
    def _buf(self) -> mmap.mmap:
        assert self._mm is not None
        return self._mm

    def _map(self, size: int) -> None:
        old = self._mm[:self._used] if self._mm is not None else b""
        if self._doubles is not None:
            self._doubles.release()           # an mmap with a view on it cannot close
        if self._mm is not None:
            self._mm.close()
        if self._file is not None:
            self._file.truncate(size)
            self._mm = mmap.mmap(self._file.fileno(), size)
        else:
            self._mm = mmap.mmap(-1, size)
            self._mm[:len(old)] = old
        self._doubles = memoryview(self._mm).cast("d")
        self._size = size

    def add(self, key: str, amount: float) -> None:
        at = self._offsets.get(key)
        if at is None:
            at = self._append(key)
        doubles = self._doubles
        assert doubles is not None
        doubles[at] += amount

    def _append(self, key: str) -> int:
        data = key.encode()
        padded = (_LENGTH.size + len(data) + 7) // 8 * 8
        end = self._used + padded + _VALUE.size
        if end > self._size:
            self._map(max(self._size * 2, end))
        _LENGTH.pack_into(self._buf, self._used, len(data))
        self._buf[self._used + _LENGTH.size:self._used + _LENGTH.size + len(data)] = data
        offset = self._used + padded
        _VALUE.pack_into(self._buf, offset, 0.0)
        self._used = end
        _HEADER.pack_into(self._buf, 0, end)
        self._offsets[key] = offset // _VALUE.size
        return offset // _VALUE.size

    def values(self) -> dict[str, float]:
        return parse(bytes(self._buf[:self._used]))


def parse(data: bytes) -> dict[str, float]:
    """The values of a table's bytes (read from its file by any process)."""
    out: dict[str, float] = {}
    if len(data) < _HEADER.size:
        return out
    used, at = min(_HEADER.unpack_from(data, 0)[0], len(data)), _HEADER.size
    while at + _LENGTH.size <= used:
        n = _LENGTH.unpack_from(data, at)[0]
        value_at = at + (_LENGTH.size + n + 7) // 8 * 8
        if value_at + _VALUE.size > used:
            break
        out[data[at + _LENGTH.size:at + _LENGTH.size + n].decode()] = _VALUE.unpack_from(data, value_at)[0]
        at = value_at + _VALUE.size
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServeMetrics:
    """Counters and histograms; ``render(model_labels)`` is the /metrics page.

    ``folder``: where every worker of one server keeps its table (None: this process alone).
    Called on the event loop's thread only (requests, batches and scrapes all run there), so
    nothing is locked."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self._folder = Path(folder) if folder is not None else None
        path = self._folder / f"{os.getpid()}{_SUFFIX}" if self._folder is not None else None
        self._table = ValueTable(path)

    def enter(self) -> None:
        self._table.add("in_flight", 1)

    def leave(self) -> None:
        self._table.add("in_flight", -1)

    def request(self, route: str, status: int, seconds: float) -> None:
        table = self._table
        table.add(f"requests|{route}|{status}", 1)
        table.add(f"latency|{route}|{bisect_left(_LATENCY_BUCKETS, seconds)}", 1)
        table.add(f"latency_sum|{route}", seconds)

    def batch(self, rows: int) -> None:
        self._table.add(f"batch|{bisect_left(_BATCH_BUCKETS, rows)}", 1)
        self._table.add("batch_sum", rows)

    def totals(self) -> tuple[dict[str, float], int]:
        """Every worker's values summed (the in-flight gauge over living workers), and how many workers."""
        own = self._table.values()
        if self._folder is None:
            return own, 1
        total: dict[str, float] = {}
        workers = 0
        for path in self._folder.glob(f"*{_SUFFIX}"):
            pid = int(path.stem) if path.stem.isdigit() else -1
            mine = path == self._table.path
            try:
                values = own if mine else parse(path.read_bytes())
            except OSError:
                continue
            alive = mine or _alive(pid)
            workers += alive
            for key, value in values.items():
                if key != "in_flight" or alive:
                    total[key] = total.get(key, 0.0) + value
        return total, workers

    def render(self, model: Callable[[], dict[str, str]]) -> str:
        values, workers = self.totals()
        requests: dict[tuple[str, str], float] = {}
        latency: dict[str, list[float]] = {}
        latency_sum: dict[str, float] = {}
        batches = [0.0] * (len(_BATCH_BUCKETS) + 1)
        for key, value in values.items():
            parts = key.split("|")
            if parts[0] == "requests":
                requests[(parts[1], parts[2])] = value
            elif parts[0] == "latency":
                latency.setdefault(parts[1], [0.0] * (len(_LATENCY_BUCKETS) + 1))[int(parts[2])] = value
            elif parts[0] == "latency_sum":
                latency_sum[parts[1]] = value
            elif parts[0] == "batch":
                batches[int(parts[1])] = value
        lines = ["# HELP keel_serve_requests_total Requests answered, by route and status.",
                 "# TYPE keel_serve_requests_total counter"]
        for (route, status), n in sorted(requests.items()):
            lines.append(f'keel_serve_requests_total{{route="{route}",status="{status}"}} {n:.0f}')
        lines += ["# HELP keel_serve_request_seconds Time to answer a request.",
                  "# TYPE keel_serve_request_seconds histogram"]
        for route, counts in sorted(latency.items()):
            lines += _histogram("keel_serve_request_seconds", _LATENCY_BUCKETS, counts,
                                latency_sum.get(route, 0.0), f'route="{route}"')
        lines += ["# HELP keel_serve_batch_rows Rows per model call.", "# TYPE keel_serve_batch_rows histogram"]
        lines += _histogram("keel_serve_batch_rows", _BATCH_BUCKETS, batches, values.get("batch_sum", 0.0))
        lines += ["# HELP keel_serve_in_flight Requests being answered now.", "# TYPE keel_serve_in_flight gauge",
                  f"keel_serve_in_flight {values.get('in_flight', 0.0):.0f}",
                  "# HELP keel_serve_workers Server processes answering requests.",
                  "# TYPE keel_serve_workers gauge", f"keel_serve_workers {workers}"]
        labels = ",".join(f'{k}="{v}"' for k, v in model().items())
        lines += ["# HELP keel_serve_model_info The model being served (its run and artifact hash).",
                  "# TYPE keel_serve_model_info gauge", f"keel_serve_model_info{{{labels}}} 1"]
        return "\n".join(lines) + "\n"


def _histogram(name: str, bounds: tuple[float, ...], counts: list[float], total: float,
               labels: str = "") -> list[str]:
    out, running = [], 0.0
    sep = "," if labels else ""
    for bound, count in zip(bounds, counts):
        running += count
        out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running:.0f}')
    running += counts[-1]
    out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {running:.0f}')
    brace = f"{{{labels}}}" if labels else ""
    return out + [f"{name}_sum{brace} {total}", f"{name}_count{brace} {running:.0f}"]
