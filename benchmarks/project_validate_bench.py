"""`keel project validate` of a huge keel.yaml: CPU time of reading and checking 20,000 jobs.

    .venv/bin/python benchmarks/project_validate_bench.py [--jobs 20000]

Three files: every job valid and chained in file order, every job chained backwards (after:
names the next job), and every job with an unknown key (40,000 problems, a 52-line message).
Target: each under 3 s of CPU, in this process (interpreter start-up not counted).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from keel.errors import ProjectError
from keel.flow.project import load_project

FILES = {
    "chained": "  - name: job{i}\n    entrypoint: echo {i}\n    after: [job{prev}]\n",
    "backwards": "  - name: job{i}\n    entrypoint: echo {i}\n    after: [job{next}]\n",
    "bad-keys": "  - name: job{i}\n    entrypont: echo {i}\n",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for label, job in FILES.items():
            path = Path(tmp) / f"{label}.yaml"
            body = "".join(job.format(i=i, prev=i - 1, next=i + 1) for i in range(args.jobs))
            body = body.replace("    after: [job-1]\n", "").replace(f"    after: [job{args.jobs}]\n", "")
            path.write_text("name: huge\njobs:\n" + body)
            started, cpu = time.perf_counter(), time.process_time()
            try:
                load_project(str(path)).order()
                outcome = "valid"
            except ProjectError as exc:
                outcome = f"{len(exc.issues):,} problems, {len(str(exc).splitlines())} lines"
            print(f"{label:10} {args.jobs:,} jobs: {time.process_time() - cpu:.2f} s CPU, "
                  f"{time.perf_counter() - started:.2f} s wall ({outcome})")


if __name__ == "__main__":
    main()
