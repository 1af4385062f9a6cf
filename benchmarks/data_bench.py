"""Data Engine benchmarks, side by side with the peers a user would otherwise pick.

    .venv/bin/python benchmarks/data_bench.py                     # what `make bench` runs
    .venv/bin/python benchmarks/data_bench.py --loader-rows 4000000 --save-rows 2000000
    .venv/bin/python benchmarks/data_bench.py --skip-ray

Loader: one shuffled epoch of rows of 64 float32, batch 4,096, through
- ``keel.data.RowGroupLoader`` (window = ``prefetch`` row groups),
- Ray Data ``read_parquet(...).iter_batches(local_shuffle_buffer_size=<same rows>)``,
- Petastorm ``make_batch_reader`` where it imports (0.13.1 does not with pyarrow >= 16: it
  imports the removed ``pyarrow.filesystem``; the row says why),
- the floor: pyarrow reading the same row groups in random order, no shuffle buffer.
Peak RSS of the loader is sampled every 10 ms in each of 5 epochs: each epoch's peak above
the start must stay within the window + 200 MB, and flat (the last epoch's peak no more than
the first's + 50 MB).

Save: ``DataEngine.save`` of 10M rows x 16 float64 against ``pyarrow.parquet.write_table`` of
the same table (same compression and 1M-row groups), and a DuckDB group-by over the saved
table, warm (the engine's one connection, its view and the cached Parquet footers). Every
time is wall seconds and the process's CPU seconds (all its threads), with the load average:
on a shared machine the CPU time is the steadier number.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

BATCH = 4096


def _table(rows: int, cols: int, dtype: Any) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({f"f{i}": rng.random(rows, dtype=np.float64).astype(dtype) for i in range(cols)})


class PeakRSS:
    """The process's peak resident memory while the block runs, sampled every 10 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRSS":
        proc = psutil.Process()

        def sample() -> None:
            while not self._stop.wait(0.01):
                self.peak = max(self.peak, proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    rows = fn()
    return time.perf_counter() - start, rows


def _clocked(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _load() -> str:
    return "load %.1f" % os.getloadavg()[0]


def bench_loader(folder: Path, rows: int, cols: int, dtype: Any, group_rows: int, prefetch: int,
                 skip_ray: bool) -> list[tuple[str, str]]:
    from keel.data import RowGroupLoader

    path = folder / f"loader_{cols}_{np.dtype(dtype).name}.parquet"
    pq.write_table(_table(rows, cols, dtype), path, row_group_size=group_rows)
    window_rows = prefetch * group_rows
    out = []

    loader = RowGroupLoader(str(path), batch_size=BATCH, seed=0, prefetch=prefetch)
    for _ in loader:  # warm the page cache
        pass
    keel_s, n = _timed(lambda: sum(len(b["f0"]) for b in loader))
    assert n == rows
    base = psutil.Process().memory_info().rss
    peaks = []
    for _ in range(5):
        with PeakRSS() as peak:
            for _ in loader:
                pass
        peaks.append((peak.peak - base) / 2**20)
    window_mb = window_rows * cols * np.dtype(dtype).itemsize / 2**20
    bounded = max(peaks) <= window_mb + 200
    flat = peaks[-1] <= peaks[0] + 50
    out.append((f"RowGroupLoader, {cols} x {np.dtype(dtype).name}", f"{rows / keel_s:,.0f} rows/s ({_load()})"))
    out.append(("  peak RSS above the start, epochs 1-5",
                f"{' / '.join(f'{p:,.0f}' for p in peaks)} MB; window {window_mb:,.0f} MB: "
                f"{'within' if bounded else 'OVER'} window + 200 MB, {'flat' if flat else 'GROWING'}"))

    def floor() -> int:
        f = pq.ParquetFile(path, memory_map=True)
        total = 0
        for g in np.random.default_rng(1).permutation(f.metadata.num_row_groups):
            t = f.read_row_group(int(g))
            for i in range(0, t.num_rows, BATCH):
                total += len({c: t.column(c).slice(i, BATCH).to_numpy() for c in t.column_names}["f0"])
        return total

    floor_s, n = _timed(floor)
    out.append(("  floor: pyarrow, random row-group order, no shuffle", f"{rows / floor_s:,.0f} rows/s"))
    out.append(_petastorm(path, rows, keel_s))

    if not skip_ray:
        try:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            ds = ray.data.read_parquet(str(path))

            def ray_epoch() -> int:
                return sum(len(b["f0"]) for b in ds.iter_batches(batch_size=BATCH, batch_format="numpy",
                                                                  local_shuffle_buffer_size=window_rows))

            ray_epoch()  # warm
            ray_s, n = _timed(ray_epoch)
            ray.shutdown()
            out.append((f"  Ray Data iter_batches, shuffle buffer {window_rows:,} rows",
                        f"{rows / ray_s:,.0f} rows/s  (Keel {ray_s / keel_s:.1f}x)"))
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
            out.append(("  Ray Data", f"not run: {type(exc).__name__}: {exc}"))
    return out


def _petastorm(path: Path, rows: int, keel_s: float) -> tuple[str, str]:
    """Petastorm's batch reader over the same file, shuffled by row group, where it imports."""
    try:
        from petastorm import make_batch_reader
    except ModuleNotFoundError as exc:
        why = ("not installed" if exc.name == "petastorm"
               else f"it does not import: {type(exc).__name__}: {exc}")
        return ("  Petastorm make_batch_reader", f"not run: {why} (0.13.1 imports pyarrow.filesystem, "
                                                 f"which pyarrow 16 removed)")
    except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
        return ("  Petastorm make_batch_reader", f"not run: {type(exc).__name__}: {exc}")

    def epoch() -> int:
        with make_batch_reader(path.absolute().as_uri(), num_epochs=1, shuffle_row_groups=True,
                               workers_count=2) as reader:
            return sum(len(b.f0) for b in reader)

    epoch()
    s, n = _timed(epoch)
    return ("  Petastorm make_batch_reader, row groups shuffled", f"{n / s:,.0f} rows/s  (Keel {s / keel_s:.1f}x)")


def bench_save(folder: Path, rows: int) -> list[tuple[str, str]]:
    from keel.data.engine import DataEngine

    table = _table(rows, 16, np.float64)
    os.environ["KEEL_HOME"] = str(folder / "home")
    engine = DataEngine.from_env()
    engine.save("warmup", table.slice(0, 1000))
    groups = 1024 * 1024
    plain = [_clocked(lambda: pq.write_table(table, folder / "plain.parquet", row_group_size=groups,
                                             compression="snappy")) for _ in range(2)]
    keel = [_clocked(lambda: engine.save("big", table)) for _ in range(2)]
    (plain_s, plain_cpu), (keel_s, keel_cpu) = min(plain), min(keel)
    query = "SELECT floor(f0 * 10) AS k, avg(f1), max(f2), count(*) FROM big GROUP BY 1"
    first_s, first_cpu = _clocked(lambda: engine.sql(query))
    warm = sorted(_clocked(lambda: engine.sql(query)) for _ in range(5))
    (q_s, q_cpu) = warm[len(warm) // 2]
    groups_written = pq.ParquetFile(engine.paths("big")[0]).metadata.num_row_groups
    return [(f"save {rows:,} x 16 float64: DataEngine.save",
             f"{keel_s:.2f} s, CPU {keel_cpu:.2f} s ({keel_s / plain_s:.2f}x wall, "
             f"{keel_cpu / plain_cpu:.2f}x CPU; {_load()})"),
            ("  pyarrow.parquet.write_table, same row groups", f"{plain_s:.2f} s, CPU {plain_cpu:.2f} s"),
            (f"  DuckDB group-by over it ({groups_written} row groups), first call",
             f"{first_s:.3f} s, CPU {first_cpu:.3f} s"),
            ("  DuckDB group-by, warm (median of 5)", f"{q_s:.3f} s, CPU {q_cpu:.3f} s ({_load()})")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loader-rows", type=int, default=1_000_000)
    parser.add_argument("--save-rows", type=int, default=10_000_000)
    parser.add_argument("--group-rows", type=int, default=32_768)
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="keel-data-bench-") as tmp:
        folder = Path(tmp)
        rows += bench_loader(folder, args.loader_rows, 64, np.float32, args.group_rows, args.prefetch, args.skip_ray)
        rows += bench_loader(folder, args.loader_rows // 8, 512, np.float64, args.group_rows // 8, args.prefetch,
                             args.skip_ray)
        rows += bench_save(folder, args.save_rows)
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
