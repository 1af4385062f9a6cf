"""CPU per task of a flow run, split into the scheduler and its task processes.

    .venv/bin/python benchmarks/task_cpu.py benchmarks/flows/foreach1000.py 1000 [RUN OPTIONS]

Runs ``flow.py run --max-workers 16 --max-num-splits 20000 [RUN OPTIONS]`` in this process
(so the scheduler is this process) and prints getrusage of this process (the scheduler) and
of its reaped children (tasks, the guard), each divided by the number of tasks given, with
the page faults. CPU time is steadier than wall time on a shared machine. Set KEEL_HOME to a
fresh folder first; run a base commit side by side with PYTHONPATH=OTHER_CHECKOUT/src.
"""

from __future__ import annotations

import resource
import runpy
import sys


def main() -> None:
    if len(sys.argv) < 3 or not sys.argv[2].isdigit() or int(sys.argv[2]) < 1:
        print(f"usage: {sys.argv[0]} FLOW.py TASKS [RUN OPTIONS]  (TASKS: the number of tasks the run makes)",
              file=sys.stderr)
        sys.exit(2)
    flow, tasks = sys.argv[1], int(sys.argv[2])
    sys.argv = [flow, "run", "--max-workers", "16", "--max-num-splits", "20000", *sys.argv[3:]]
    try:
        runpy.run_path(flow, run_name="__main__")
    except SystemExit:
        pass
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    sched, work = me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime
    print(f"scheduler {sched:.2f} s (user {me.ru_utime:.2f}, sys {me.ru_stime:.2f}), "
          f"tasks {work:.2f} s (user {kids.ru_utime:.2f}, sys {kids.ru_stime:.2f}); per task: "
          f"{1000 * sched / tasks:.2f} + {1000 * work / tasks:.2f} = {1000 * (sched + work) / tasks:.2f} ms CPU; "
          f"page faults per task: scheduler {me.ru_minflt / tasks:.0f}, task {kids.ru_minflt / tasks:.0f}; "
          f"scheduler peak RSS {me.ru_maxrss / 1024:.0f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
