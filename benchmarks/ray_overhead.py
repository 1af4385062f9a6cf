"""Per-task overhead of the Ray executor against the local one, on the same flow and machine.

    .venv/bin/python benchmarks/ray_overhead.py                  # starts its own 1-node Ray cluster
    .venv/bin/python benchmarks/ray_overhead.py --address HOST:PORT --repeat 5

Runs benchmarks/flows/foreach100.py (a 100-way foreach of trivial tasks, --max-workers 16)
with the local executor and with ``--with ray``, each as a fresh ``python flow.py run``
process in its own KEEL_HOME, alternating, ``--repeat`` times. Reported per configuration
(medians): the wall time of the whole command, the run's own duration (first task started
to last finished, from the store), and the overhead per task: the run's duration divided
by its 103 tasks (the tasks do no work, so that is all orchestration). Ray's one-off cost of
connecting (ray.init) is inside the wall time but not the run. Results go to
benchmarks/results/ray_overhead.{json,md}.

Without --address (or KEEL_RAY_ADDRESS) the script starts a head node of its own with as
many CPUs as the machine, in its own process group and temp dir, and stops only that.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOW = HERE / "flows" / "foreach100.py"
RESULTS = HERE / "results"
TASKS = 103  # start + 100 parts + join + end
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(root: Path) -> tuple[subprocess.Popen, str, str]:
    ray = Path(sys.executable).with_name("ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="keel-bench-ray-", dir="/tmp")
    env = {**os.environ, **ENV}
    log = open(root / "ray-head.log", "wb")
    proc = subprocess.Popen([str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.3",
                             f"--port={port}", f"--num-cpus={os.cpu_count() or 1}", "--include-dashboard=false",
                             f"--ray-client-server-port={free_port()}", f"--dashboard-port={free_port()}",
                             f"--dashboard-agent-listen-port={free_port()}", "--min-worker-port=0",
                             "--max-worker-port=0", f"--temp-dir={temp}", "--disable-usage-stats"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in (root / "ray-head.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"ray start failed:\n{(root / 'ray-head.log').read_text()[-2000:]}")
        time.sleep(0.2)
    return proc, f"127.0.0.3:{port}", temp


def stop_cluster(proc: subprocess.Popen, temp: str) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    shutil.rmtree(temp, ignore_errors=True)


def run_once(executor: str, address: str, root: Path) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix=f"{executor}-", dir=root))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "RAY_ADDRESS"))}
    env.update(ENV, KEEL_HOME=str(home / ".keel"), KEEL_RAY_ADDRESS=address)
    args = [sys.executable, str(FLOW), "run", "--quiet", "--max-workers", "16"]
    if executor == "ray":
        args += ["--with", "ray"]
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=home, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{executor} run failed:\n{done.stderr[-3000:]}")
    probe = ("import json; from keel import Flow; r = Flow('Foreach100').latest_run; "
             "ts = [t for s in r for t in s]; "
             "print(json.dumps({'run': max(t.finished_at.timestamp() for t in ts) - "
             "min(t.started_at.timestamp() for t in ts), 'nodes': sorted({t.node for t in ts})}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=home, env=env, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if executor == "ray":
        assert all(n.startswith("ray:") for n in info["nodes"]), info["nodes"]
    shutil.rmtree(home, ignore_errors=True)
    return {"wall_s": wall, "run_s": info["run"], "per_task_ms": 1000 * info["run"] / TASKS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=os.environ.get("KEEL_RAY_ADDRESS"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="keel-ray-bench-"))
    cluster = None
    address = args.address
    try:
        if not address:
            cluster, address, temp = start_cluster(root)
        run_once("ray", address, root)   # warm the cluster's worker pool once, not measured
        samples: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
        for i in range(args.repeat):
            for executor in ("local", "ray"):
                samples[executor].append(run_once(executor, address, root))
                s = samples[executor][-1]
                print(f"  {executor:5} #{i + 1}: wall {s['wall_s']:.2f}s, run {s['run_s']:.2f}s, "
                      f"{s['per_task_ms']:.1f} ms/task", flush=True)
    finally:
        if cluster is not None:
            stop_cluster(cluster, temp)
        shutil.rmtree(root, ignore_errors=True)
    med = {e: {k: statistics.median(s[k] for s in v) for k in v[0]} for e, v in samples.items()}
    ratio = med["ray"]["per_task_ms"] / med["local"]["per_task_ms"]
    table = ["| executor | command wall (s) | run (s) | overhead per task (ms) |", "|---|---|---|---|"]
    for e in ("local", "ray"):
        table.append(f"| {e} | {med[e]['wall_s']:.2f} | {med[e]['run_s']:.2f} | {med[e]['per_task_ms']:.1f} |")
    text = "\n".join(table) + (f"\n\nforeach100 (103 trivial tasks, --max-workers 16), median of {args.repeat}, "
                               f"{os.cpu_count()} cores; Ray/local per-task overhead: {ratio:.1f}x\n")
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray_overhead.json").write_text(json.dumps({"median": med, "samples": samples,
                                                           "cores": os.cpu_count()}, indent=2))
    (RESULTS / "ray_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
