"""What the store's metric writer costs: 100,000 points of one series (steps 0..N-1) written
with ``keel.store.runs.insert_metrics`` in the scheduler's batches (10,000 a transaction) into a
fresh SQLite store, CPU time of the writing process (SQLite runs in it), median of 3; with the
block summaries (``update_metric_blocks``, what every write does) and without them.

    .venv/bin/python benchmarks/metric_write_bench.py [--points 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any


def write(points: int, blocks: bool) -> float:
    import keel.store.runs as store_runs
    from keel.store.metadata import MetadataStore

    with tempfile.TemporaryDirectory() as folder:
        md = MetadataStore(f"sqlite:///{folder}/metadata.db")
        rows = [{"flow": "F", "run_id": 1, "task_id": 1, "name": "loss", "step": s, "value": 1 / (1 + s),
                 "ts": 0.0} for s in range(points)]
        kept = store_runs.update_metric_blocks
        if not blocks:
            def skip(conn: Any, rows: list[dict[str, Any]]) -> None:
                return None
            store_runs.update_metric_blocks = skip
        try:
            c0 = time.process_time()
            for k in range(0, points, 10_000):
                with md.db.write() as conn:
                    store_runs.insert_metrics(conn, rows[k:k + 10_000])
            return time.process_time() - c0
        finally:
            store_runs.update_metric_blocks = kept
            md.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    for blocks in (False, True):
        cpu = statistics.median(write(args.points, blocks) for _ in range(3))
        print(f"{'with' if blocks else 'without'} block summaries: {cpu * 1000:,.0f} ms CPU, "
              f"{args.points / cpu:,.0f} points/s")


if __name__ == "__main__":
    main()
