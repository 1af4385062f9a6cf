"""Step caching numbers: the cost of a key, and a 100-step flow run again fully cached.

    .venv/bin/python benchmarks/cache_bench.py [--steps 100] [--repeat 3]

- key: time to compute one step's cache key after the first (fingerprints are memoised per
  process), measured on the generated flow's steps (target < 2 ms);
- cached100: wall time of `start_run` in this process for a 100-step linear flow whose every
  step is @cache, on its second run (all hits; target < 0.5 s), and the bytes the second run
  wrote under the artifact store (target 0), and its CPU time (the machine may be shared);
  ``--profile`` prints where the cached run's time goes.
The flow runs in-process through the one entry point, so interpreter start-up is not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def flow_source(steps: int) -> str:
    lines = ["from keel import FlowSpec, step, cache", "", "", "class Cached100(FlowSpec):"]
    names = ["start"] + [f"s{i}" for i in range(1, steps - 1)] + ["end"]
    for i, name in enumerate(names):
        lines += ["    @cache", "    @step", f"    def {name}(self):", f"        self.v{i} = {i} * 2"]
        if name != "end":
            lines.append(f"        self.next(self.{names[i + 1]})")
        lines.append("")
    lines += ["", "if __name__ == '__main__':", "    Cached100()"]
    return "\n".join(lines) + "\n"


def store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the cached run (CPU time, top 30)")
    ap.add_argument("--profile-wall", action="store_true", help="profile wall time instead, by own time")
    args = ap.parse_args()
    walls, cpus, keys, written = [], [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["KEEL_HOME"] = str(Path(tmp) / ".keel")
            path = Path(tmp) / "cached100.py"
            path.write_text(flow_source(args.steps))
            sys.path.insert(0, tmp)
            from keel.flow.decorators import step_decorators
            from keel.cli.flow_cli import load_flow_file
            from keel.flow.parameters import defaults_or_given
            from keel.runtime.fingerprint import step_fingerprint
            from keel.runtime.launch import RunRequest, start_run
            from keel.runtime.scheduler import Options

            flow_cls = load_flow_file(str(path))

            def run(profile: bool = False) -> tuple[float, float]:
                req = RunRequest(flow_cls=flow_cls, params=defaults_or_given(flow_cls, {}), flow_file=str(path),
                                 options=Options(), quiet=True)
                prof = None
                if profile:
                    import cProfile

                    # CPU, not wall, by default: the machine may be shared
                    prof = cProfile.Profile() if args.profile_wall else cProfile.Profile(time.process_time)
                    prof.enable()
                t, c = time.perf_counter(), time.process_time()
                result = start_run(req)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                if prof is not None:
                    import pstats

                    prof.disable()
                    pstats.Stats(prof).sort_stats("tottime" if args.profile_wall else "cumulative").print_stats(30)
                assert result.ok, result
                return wall, cpu

            run()
            before = store_bytes(Path(tmp) / ".keel" / "artifacts")
            wall, cpu = run((args.profile or args.profile_wall) and not walls)
            walls.append(wall)
            cpus.append(cpu)
            written.append(store_bytes(Path(tmp) / ".keel" / "artifacts") - before)
            names = [n for n in vars(flow_cls) if getattr(getattr(flow_cls, n), "_keel_step", False)]
            t = time.perf_counter()
            for n in names:
                step_fingerprint(flow_cls, n, step_decorators(getattr(flow_cls, n)))
            keys.append((time.perf_counter() - t) / len(names))
            sys.path.remove(tmp)
    wall, cpu, key = statistics.median(walls), statistics.median(cpus), statistics.median(keys)
    print("| case | metric | value | target | ok |")
    print("|---|---|---|---|---|")
    print(f"| key | per step, memoised | {key * 1e3:.3f} ms | < 2 ms | {'yes' if key < 0.002 else 'NO'} |")
    print(f"| cached{args.steps} | second run, wall | {wall:.3f} s | < 0.5 s | {'yes' if wall < 0.5 else 'NO'} |")
    print(f"| cached{args.steps} | artifact bytes written by the second run | {max(written)} | 0 | "
          f"{'yes' if max(written) == 0 else 'NO'} |")
    print(f"| cached{args.steps} | second run, CPU time of this process | {cpu:.3f} s | | |")


if __name__ == "__main__":
    main()
