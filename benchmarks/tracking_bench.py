"""Experiment tracking, Keel against MLflow 3 with its local backend (SQLite, MLflow's default).

    .venv/bin/python benchmarks/tracking_bench.py                 # both cases, 100,000 points, 10,000 runs
    .venv/bin/python benchmarks/tracking_bench.py --runs 2000 --sync-points 1000

Case 1, **log 100,000 metric points from one task**, end to end (until the points can be read
back from the store):
  * Keel: a one-step flow calling ``current.log_metric`` 100,000 times, run with ``keel run``;
    the time is the whole run (interpreter start, scheduler, task, ingestion into SQLite).
  * MLflow: ``mlflow.log_metric`` in a run, three ways: synchronous (its default: one
    database write per point), asynchronous (``synchronous=False`` then
    ``flush_async_logging``) -- both timed on ``--sync-points`` points and scaled to 100,000,
    since the full loops take many minutes -- and ``MlflowClient.log_batch`` of 1,000 points
    per call (all 100,000).
  Both include their imports and store setup.

Case 2, **list and filter 10,000 runs**: both stores hold the same 10,000 runs (params alpha,
depth, opt; metric acc with 3 points). Timed, each in a warm process (median of 5):
  * list: every run with its params (Keel ``Flow.runs(limit=10000)``; MLflow
    ``MlflowClient.search_runs(max_results=10000)``),
  * filter: ``metrics.acc >= 0.9 and params.opt = 'adam'`` sorted by acc, descending (the
    query both languages can say: MLflow compares params as text only),
  * Keel's own ``params.alpha > 0.3 and metrics.acc >= 0.9`` (numeric on a parameter), shown alone.
  Seeding the stores is not timed (Keel's runs are written in bulk, MLflow's through its client).

MLflow lives in benchmarks/.venv-mlflow, created on first use (``pip install 'mlflow>=3,<4'``).
Results: printed as a markdown table and written to benchmarks/results/tracking.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ML_VENV = HERE / ".venv-mlflow"
ML_PYTHON = ML_VENV / "bin" / "python"
ML_REQUIREMENT = "mlflow>=3,<4"
FILTER_BOTH = "metrics.acc >= 0.9 and params.opt = 'adam'"
FILTER_KEEL = "params.alpha > 0.3 and metrics.acc >= 0.9"

LOG_FLOW = '''
import time
from keel import FlowSpec, Parameter, current, step

class LogPoints(FlowSpec):
    n = Parameter("n", default=100000)

    @step
    def start(self):
        t = time.perf_counter()
        for i in range(self.n):
            current.log_metric("loss", 1.0 / (i + 1), step=i)
        self.logging_seconds = time.perf_counter() - t
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    LogPoints()
'''


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_mlflow() -> None:
    check = [str(ML_PYTHON), "-c", "import mlflow"]
    if ML_PYTHON.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return
    log(f"setting up {ML_VENV.relative_to(HERE.parent)} ({ML_REQUIREMENT}) ... (a minute or two)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(ML_VENV)], check=True)
    pip = [str(ML_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, ML_REQUIREMENT], check=True)
    subprocess.run(check, check=True)


def rows(n: int) -> list[dict]:
    """The same n runs for both systems: alpha in (0, 1], depth 2..8, opt adam/sgd, acc's last value 0.5 + alpha/2."""
    out = []
    for i in range(1, n + 1):
        alpha = round(i / n, 4)
        out.append({"i": i, "alpha": alpha, "depth": 2 + i % 7, "opt": ["adam", "sgd"][i % 2],
                    "acc": [0.5, 0.7, round(0.5 + 0.5 * alpha, 4)]})
    return out


# -- the roles, each run in its own process ---------------------------------------------------------
def role_keel_log(folder: str, points: int) -> dict:
    flow = Path(folder) / "logpoints.py"
    flow.write_text(LOG_FLOW)
    env = {**os.environ, "KEEL_HOME": str(Path(folder) / ".keel")}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(flow), "run", "--n", str(points), "--quiet"], cwd=folder, env=env,
                          capture_output=True, text=True)
    total = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    check = subprocess.run([sys.executable, "-c", "from keel import Flow; r = Flow('LogPoints').latest_run; "
                            "print(len(r.metrics['loss']), r['start'].task.data.logging_seconds)"],
                           cwd=folder, env=env, capture_output=True, text=True, check=True)
    stored, in_task = check.stdout.split()
    assert int(stored) == points, (stored, points)
    return {"seconds": total, "in_task_seconds": float(in_task), "points": points}


def role_mlflow_log(folder: str, points: int, sync_points: int) -> dict:
    t = time.perf_counter()
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    imports = time.perf_counter() - t  # Keel's time includes its imports too
    out = {}
    for mode in ("sync", "async", "batch"):
        uri = f"sqlite:///{folder}/mlflow-{mode}.db"
        started = time.perf_counter()
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("bench")
        n = sync_points if mode in ("sync", "async") else points
        with mlflow.start_run() as run:
            t = time.perf_counter()
            if mode == "sync":
                for i in range(n):
                    mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
            elif mode == "async":
                for i in range(n):
                    mlflow.log_metric("loss", 1.0 / (i + 1), step=i, synchronous=False)
                mlflow.flush_async_logging()
            else:
                client = MlflowClient()
                now = int(time.time() * 1000)
                for lo in range(0, n, 1000):
                    client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (i + 1), now, i)
                                                               for i in range(lo, min(n, lo + 1000))])
            logging = time.perf_counter() - t
        stored = len(MlflowClient().get_metric_history(run.info.run_id, "loss"))
        assert stored == n, (mode, stored, n)
        setup = t - started + imports
        out[mode] = {"points": n, "logging_seconds": logging, "setup_seconds": setup,
                     "seconds_for_all": setup + logging * points / n}
    return out


def _median(fn, repeat: int = 5) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), count


def role_keel_search(folder: str, n: int) -> dict:
    from keel import Flow
    from keel.store import Store
    from keel.store.metadata import params, runs
    from keel.store.runs import insert_metrics

    os.environ["KEEL_HOME"] = str(Path(folder) / ".keel-search")
    md = Store.from_env().metadata
    now = time.time()
    t = time.perf_counter()
    run_rows, param_rows, metric_rows = [], [], []
    for r in rows(n):
        i, created = r["i"], now - (n - r["i"])
        run_rows.append({"flow": "Bench", "run_id": i, "kind": "flow", "status": "succeeded", "created_at": created,
                         "finished_at": created + 1, "heartbeat_at": created, "environment": "{}"})
        for name in ("alpha", "depth", "opt"):
            v = r[name]
            param_rows.append({"flow": "Bench", "run_id": i, "name": name, "value": json.dumps(v),
                               "num": None if isinstance(v, str) else float(v)})
        for step, acc in enumerate(r["acc"]):
            metric_rows.append({"flow": "Bench", "run_id": i, "task_id": 1, "name": "acc", "step": step,
                                "value": acc, "ts": created + step})
    with md.db.write() as conn:
        conn.execute(runs.insert(), run_rows)
        conn.execute(params.insert(), param_rows)
        insert_metrics(conn, metric_rows)   # the store's writer: the points and each metric's last value
    seed = time.perf_counter() - t
    flow = Flow("Bench")
    both = FILTER_BOTH.replace("'", '"')
    list_s, listed = _median(lambda: len(flow.runs(limit=n)))
    filt_s, found = _median(lambda: len(flow.runs(where=both, sort="-metrics.acc", limit=n)))
    own_s, own = _median(lambda: len(flow.runs(where=FILTER_KEEL, sort="-metrics.acc", limit=n)))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "keel.cli.main", "runs", "Bench", "--where", both, "--sort",
                           "-metrics.acc", "--limit", str(n), "--json"], capture_output=True, text=True, check=True)
    cli = time.perf_counter() - t
    assert len(json.loads(proc.stdout)) == found
    return {"seed_seconds": seed, "list_seconds": list_s, "listed": listed, "filter_seconds": filt_s,
            "found": found, "keel_filter_seconds": own_s, "keel_found": own, "cli_filter_seconds": cli}


def role_mlflow_search(folder: str, n: int) -> dict:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunStatus

    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow-search.db")
    exp = mlflow.set_experiment("bench").experiment_id
    client = MlflowClient()
    t = time.perf_counter()
    now = int(time.time() * 1000)
    for r in rows(n):
        run = client.create_run(exp)
        client.log_batch(run.info.run_id,
                         metrics=[Metric("acc", v, now, step) for step, v in enumerate(r["acc"])],
                         params=[Param(k, str(r[k])) for k in ("alpha", "depth", "opt")])
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    seed = time.perf_counter() - t
    list_s, listed = _median(lambda: len(client.search_runs([exp], max_results=n)))
    filt_s, found = _median(lambda: len(client.search_runs([exp], filter_string=FILTER_BOTH,
                                                           order_by=["metrics.acc DESC"], max_results=n)))
    return {"seed_seconds": seed, "list_seconds": list_s, "listed": listed, "filter_seconds": filt_s, "found": found}


# -- the driver ------------------------------------------------------------------------------------
def run_role(python: Path | str, role: str, *args: object) -> dict:
    proc = subprocess.run([str(python), __file__, "--role", role, *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{role} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--sync-points", type=int, default=3_000,
                        help="points MLflow logs one by one, sync and async (the time is scaled to --points)")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--only", choices=["log", "search"], default=None)
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        fn = {"keel-log": role_keel_log, "mlflow-log": role_mlflow_log, "keel-search": role_keel_search,
              "mlflow-search": role_mlflow_search}[role]
        typed = [rest[0], *map(int, rest[1:])]
        print(json.dumps(fn(*typed)))
        return
    ensure_mlflow()
    results: dict = {"points": args.points, "runs": args.runs, "machine": f"{os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory(prefix="keel-tracking-bench-") as folder:
        if args.only in (None, "log"):
            log(f"log {args.points:,} points: keel ...")
            results["keel_log"] = run_role(sys.executable, "keel-log", folder, args.points)
            log(f"log {args.points:,} points: mlflow (sync and async timed on {args.sync_points:,}, log_batch) ...")
            t = time.perf_counter()
            results["mlflow_log"] = run_role(ML_PYTHON, "mlflow-log", folder, args.points, args.sync_points)
            results["mlflow_log"]["process_seconds"] = time.perf_counter() - t
        if args.only in (None, "search"):
            log(f"list and filter {args.runs:,} runs: keel ...")
            results["keel_search"] = run_role(sys.executable, "keel-search", folder, args.runs)
            log(f"list and filter {args.runs:,} runs: mlflow (seeding {args.runs:,} runs takes a few minutes) ...")
            results["mlflow_search"] = run_role(ML_PYTHON, "mlflow-search", folder, args.runs)
    table = report(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tracking.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "tracking.md").write_text(table + "\n")


def report(r: dict) -> str:
    lines = ["| case | Keel | MLflow 3 (SQLite) | MLflow / Keel |", "|---|---|---|---|"]
    if "keel_log" in r:
        k, m = r["keel_log"], r["mlflow_log"]
        n = r["points"]
        lines.append(f"| log {n:,} points, whole run (Keel) vs log_metric (MLflow default, sync; "
                     f"timed on {m['sync']['points']:,}) | {k['seconds']:.2f} s | {m['sync']['seconds_for_all']:.1f} s "
                     f"| {m['sync']['seconds_for_all'] / k['seconds']:.0f}x |")
        lines.append(f"| log {n:,} points, MLflow log_metric(synchronous=False) + flush (timed on "
                     f"{m['async']['points']:,}) | {k['seconds']:.2f} s | "
                     f"{m['async']['seconds_for_all']:.1f} s | {m['async']['seconds_for_all'] / k['seconds']:.1f}x |")
        lines.append(f"| log {n:,} points, MLflow log_batch x1000 | {k['seconds']:.2f} s | "
                     f"{m['batch']['seconds_for_all']:.1f} s | {m['batch']['seconds_for_all'] / k['seconds']:.1f}x |")
        lines.append(f"| points/s inside the task (Keel) vs MLflow sync log_metric | "
                     f"{n / k['in_task_seconds']:,.0f}/s | {m['sync']['points'] / m['sync']['logging_seconds']:,.0f}/s | "
                     f"{(n / k['in_task_seconds']) / (m['sync']['points'] / m['sync']['logging_seconds']):.0f}x |")
    if "keel_search" in r:
        k, m = r["keel_search"], r["mlflow_search"]
        n = r["runs"]
        lines.append(f"| list {n:,} runs with params | {k['list_seconds'] * 1000:.0f} ms | "
                     f"{m['list_seconds'] * 1000:.0f} ms | {m['list_seconds'] / k['list_seconds']:.1f}x |")
        lines.append(f"| filter+sort {n:,} runs: `{FILTER_BOTH}` ({k['found']:,} match) | "
                     f"{k['filter_seconds'] * 1000:.0f} ms | {m['filter_seconds'] * 1000:.0f} ms | "
                     f"{m['filter_seconds'] / k['filter_seconds']:.1f}x |")
        assert k["found"] == m["found"], (k["found"], m["found"])
        lines.append(f"| Keel only: `{FILTER_KEEL}` ({k['keel_found']:,} match); `keel runs --where` CLI, "
                     f"whole process | {k['keel_filter_seconds'] * 1000:.0f} ms; CLI {k['cli_filter_seconds']:.2f} s "
                     f"| (params compare as text only) | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
