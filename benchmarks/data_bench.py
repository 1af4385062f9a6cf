"""Data Engine benchmarks, side by side with the peers a user would otherwise pick.

    .venv/bin/python benchmarks/data_bench.py                     # defaults sized for a laptop
    .venv/bin/python benchmarks/data_bench.py --loader-rows 4000000 --save-rows 10000000
    .venv/bin/python benchmarks/data_bench.py --skip-ray

Loader: one shuffled epoch of rows of 64 float32, batch 4,096, through
- ``keel.data.RowGroupLoader`` (window = ``prefetch`` row groups),
- Ray Data ``read_parquet(...).iter_batches(local_shuffle_buffer_size=<same rows>)``,
- the floor: pyarrow reading the same row groups in random order, no shuffle buffer.
Peak RSS of the loader over 5 epochs is sampled every 10 ms (it should stay flat).

Save: ``DataEngine.save`` against ``pyarrow.parquet.write_table`` of the same table (same
compression and row groups), and a DuckDB group-by over the saved table (warm).
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
    with PeakRSS() as peak:
        for _ in range(5):
            for _ in loader:
                pass
    window_mb = window_rows * cols * np.dtype(dtype).itemsize / 2**20
    out.append((f"RowGroupLoader, {cols} x {np.dtype(dtype).name}", f"{rows / keel_s:,.0f} rows/s"))
    out.append(("  peak RSS over 5 epochs, above the start", f"{(peak.peak - base) / 2**20:,.0f} MB "
                                                             f"(window {window_mb:,.0f} MB)"))

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


def bench_save(folder: Path, rows: int) -> list[tuple[str, str]]:
    from keel.data.engine import DataEngine

    table = _table(rows, 16, np.float64)
    os.environ["KEEL_HOME"] = str(folder / "home")
    engine = DataEngine.from_env()
    engine.save("warmup", table.slice(0, 1000))
    plain_s, _ = _timed(lambda: (pq.write_table(table, folder / "plain.parquet", row_group_size=1024 * 1024,
                                                compression="snappy"), rows)[1])
    keel_s, _ = _timed(lambda: (engine.save("big", table), rows)[1])
    engine.sql("SELECT count(*) FROM big")
    query = "SELECT floor(f0 * 10) AS k, avg(f1), max(f2), count(*) FROM big GROUP BY 1"
    engine.sql(query)
    q_s, _ = _timed(lambda: len(engine.sql(query)))
    return [(f"save {rows:,} x 16 float64: DataEngine.save", f"{keel_s:.2f} s ({keel_s / plain_s:.2f}x)"),
            ("  pyarrow.parquet.write_table", f"{plain_s:.2f} s"),
            ("  DuckDB group-by over it, warm", f"{q_s:.3f} s")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loader-rows", type=int, default=1_000_000)
    parser.add_argument("--save-rows", type=int, default=2_000_000)
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
