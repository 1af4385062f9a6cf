"""The dashboard on big stores: 10,000 runs (50 params, 20 metrics of 10 points each); 100 runs
of 100,000 points each overlaid; the graph of a 1,000-way foreach.

    .venv/bin/python benchmarks/ui_bench.py                  # Keel only
    .venv/bin/python benchmarks/ui_bench.py --mlflow         # and `mlflow ui` on the same runs
    .venv/bin/python benchmarks/ui_bench.py --parts chart,dag --store /tmp/keel-ui-bench   # reuse stores

`make bench` keeps the stores in benchmarks/.stores/ui (git-ignored; delete it to seed again):
seeding takes minutes (10 million points, a 1,000-task run), measuring them seconds.

Measured, in headless Chromium (Debian's, driven by Playwright) against `keel ui` started as
a subprocess on a loopback port:
  * time to first rows: navigation start to the runs table's first row in the DOM
    (``performance.now()`` in the page), median of 5 fresh page loads;
  * the list API: p50/p95 of ``GET /api/runs?limit=50`` plain, sorted by a metric, and
    filtered (``params.p0 > 0.5 and metrics.m0 >= 0.5``), 20 calls each;
  * a 100,000-point series bucketed to 400 points: p50 of 10 calls;
  * JavaScript shipped, gzipped;
  * the compare page of 100 runs x 100,000 points ("loss", logged with steps): navigation start
    to the overlaid chart drawn, median of 3 fresh pages, and its one API call (p50 of 5, with
    the server's CPU), whole and zoomed;
  * the run page of a real 1,000-way foreach (benchmarks/flows/foreach1000.py): navigation
    start to the DAG drawn, and a click on the foreach node to its 1,000 task squares drawn.
With ``--mlflow`` the same runs are written to MLflow 3 (SQLite, through its client: minutes)
and `mlflow ui` gets the same page-load timing (the first run name in the DOM).
Seeding is not timed. Results: printed and written to benchmarks/results/ui.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STATIC = HERE.parent / "src" / "keel" / "ui" / "static"
CHROMIUM = "/usr/bin/chromium"
PARAMS, METRICS, POINTS = 50, 20, 10


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_keel(home: Path, n: int) -> None:
    """n runs written in bulk (the store's own tables, as benchmarks/tracking_bench.py does)."""
    os.environ["KEEL_HOME"] = str(home)
    from keel.store import Store
    from keel.store.metadata import params, runs
    from keel.store.runs import insert_metrics

    md = Store.from_env().metadata
    now = time.time() - n
    run_rows, param_rows, metric_rows = [], [], []
    for i in range(1, n + 1):
        created = now + i
        run_rows.append({"flow": "Bench", "run_id": i, "kind": "flow", "status": "succeeded", "created_at": created,
                         "finished_at": created + 1 + i % 7, "heartbeat_at": created, "environment": "{}"})
        for p in range(PARAMS):
            v = ((i * 7919 + p * 104729) % 1000) / 1000
            param_rows.append({"flow": "Bench", "run_id": i, "name": f"p{p}", "value": json.dumps(v), "num": v})
        for m in range(METRICS):
            for step in range(POINTS):
                metric_rows.append({"flow": "Bench", "run_id": i, "task_id": 1, "name": f"m{m}", "step": step,
                                    "value": ((i * 31 + m * 17 + step) % 100) / 100, "ts": created + step})
    with md.db.write() as conn:
        conn.execute(runs.insert(), run_rows)
        conn.execute(params.insert(), param_rows)
        for k in range(0, len(metric_rows), 50_000):   # the store's metric writer: points and last values
            insert_metrics(conn, metric_rows[k:k + 50_000])
        long = [{"flow": "Bench", "run_id": n, "task_id": 1, "name": "long", "step": s, "value": (s % 977) / 977,
                 "ts": now + s} for s in range(100_000)]
        insert_metrics(conn, long)
    md.close()


def wait_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"no answer at {url} within {seconds} s")


def first_rows_ms(browser, url: str, selector_js: str, repeat: int = 5, timeout_ms: int = 120_000) -> list[float]:
    out = []
    for _ in range(repeat):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url, wait_until="commit")
        ms = page.wait_for_function(f"() => ({selector_js}) ? performance.now() : false", timeout=timeout_ms,
                                    polling="raf").json_value()
        out.append(ms)
        page.close()
    return out


_RERENDER = """async ([action, arg]) => {
  const old = document.querySelector("table.runs tbody"), t0 = performance.now();
  if (action === "sort") document.querySelector(`th[data-col='${arg}']`).click();
  else { const box = document.querySelector(".filter input"); box.value = arg;
         box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter" })); }
  while (document.querySelector("table.runs tbody") === old) await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - t0;
}"""


def round_trips(browser, base: str, repeat: int = 6) -> dict:
    """Click to rows redrawn, in the page: a click on a column header (sort by a parameter,
    then the other way) and a filter typed and entered (two filters in turn); median of each."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(base + "/#/runs")
    page.wait_for_selector("table.runs tbody tr")
    sort = [page.evaluate(_RERENDER, ["sort", "params.p0"]) for _ in range(repeat)]
    filters = ["params.p0 > 0.5 and metrics.m0 >= 0.5", "params.p1 < 0.3"]
    filtered = [page.evaluate(_RERENDER, ["filter", filters[i % 2]]) for i in range(repeat)]
    page.close()
    return {"sort_ms": statistics.median(sort), "filter_ms": statistics.median(filtered)}


def api_timings(base: str, server_pid: int) -> dict:
    """p50/p95 wall time of each case, and the server's CPU time per call (user + system of the
    `keel ui` process over the 20 calls: what a loaded machine does not inflate as much)."""
    import httpx
    import psutil

    server = psutil.Process(server_pid)

    def cpu_ms() -> float:
        t = server.cpu_times()
        return (t.user + t.system) * 1000

    cases = {"list": {}, "sorted": {"sort": "-metrics.m0"},
             "filtered": {"where": "params.p0 > 0.5 and metrics.m0 >= 0.5", "sort": "-metrics.m1"}}
    out = {}
    with httpx.Client(base_url=base, timeout=60) as c:
        for name, q in cases.items():
            c.get("/api/runs", params={"limit": 50, **q}).raise_for_status()   # warm: its metric names
            times = []
            cpu0 = cpu_ms()
            for _ in range(20):
                t = time.perf_counter()
                c.get("/api/runs", params={"limit": 50, **q}).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            cpu = (cpu_ms() - cpu0) / 20
            times.sort()
            out[name] = {"p50_ms": statistics.median(times), "p95_ms": times[int(len(times) * 0.95) - 1],
                         "server_cpu_ms": cpu}
        times = []
        for _ in range(10):
            t = time.perf_counter()
            c.get(f"/api/runs/Bench/{RUNS}/metrics/long", params={"buckets": 400}).raise_for_status()
            times.append((time.perf_counter() - t) * 1000)
        out["series_100k_p50_ms"] = statistics.median(times)
    return out


RUNS = 10_000
CHART_RUNS, CHART_POINTS = 100, 100_000


def seed_chart(home: Path, runs: int = CHART_RUNS, points: int = CHART_POINTS) -> None:
    """``runs`` runs of flow Chart, each with a "loss" series of ``points`` points logged with
    steps, written with the store's metric writer (both indexes kept), one run per transaction."""
    os.environ["KEEL_HOME"] = str(home)
    from keel.store import Store
    from keel.store.metadata import runs as runs_table
    from keel.store.runs import insert_metrics

    md = Store.from_env().metadata
    now = time.time() - runs
    with md.db.write() as conn:
        conn.execute(runs_table.insert(), [
            {"flow": "Chart", "run_id": i, "kind": "flow", "status": "succeeded", "created_at": now + i,
             "finished_at": now + i + 1, "heartbeat_at": now + i, "environment": "{}"} for i in range(1, runs + 1)])
    for i in range(1, runs + 1):
        with md.db.write() as conn:
            insert_metrics(conn, [{"flow": "Chart", "run_id": i, "task_id": 1, "name": "loss", "step": s,
                                   "value": 1 / (1 + s * i / 1e4) + ((s * 7919 + i) % 1000) / 1e4, "ts": now + s}
                                  for s in range(points)])
    md.close()


def seed_dag(home: Path) -> None:
    """A real run of benchmarks/flows/foreach1000.py (1,000 foreach tasks) in ``home``."""
    env = {**os.environ, "KEEL_HOME": str(home)}
    subprocess.run([sys.executable, str(HERE / "flows" / "foreach1000.py"), "run", "--max-num-splits", "1000"], env=env, check=True,
                   cwd=home.parent, stdout=subprocess.DEVNULL)


_DRAWN = "(() => { const s = document.querySelectorAll(\".chart[data-metric='loss'] .legend span\"); " \
         "return s.length >= %d; })()"


def chart_timings(browser, base: str, server_pid: int, runs: int, repeat: int = 3) -> dict:
    """The compare page of ``runs`` runs: navigation start to the overlaid "loss" chart drawn
    (its legend names every run: setSeries draws in the same task), median of ``repeat`` fresh
    pages; the one API call behind it (p50 of 5, with the server's CPU per call) and a zoom."""
    import httpx
    import psutil

    specs = ",".join(f"Chart/{i}" for i in range(1, runs + 1))
    server = psutil.Process(server_pid)
    drawn, answered, cpu_page = [], [], []
    for _ in range(repeat):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        c0 = sum(server.cpu_times()[:2])
        page.goto(f"{base}/#/compare?runs={specs}", wait_until="commit")
        drawn.append(page.wait_for_function(f"() => ({_DRAWN % runs}) ? performance.now() : false",
                                            timeout=300_000, polling="raf").json_value())
        cpu_page.append((sum(server.cpu_times()[:2]) - c0) * 1000)
        # when the series' response had fully arrived: the rest is the page's own work
        answered.append(page.evaluate("() => performance.getEntriesByType('resource')"
                                      ".filter((e) => e.name.includes('/api/series')).map((e) => e.responseEnd)[0]"))
        page.close()
    out: dict = {"drawn_ms": drawn, "series_answered_ms": answered, "server_cpu_per_page_ms": cpu_page}
    with httpx.Client(base_url=base, timeout=300) as c:
        for case, extra in (("all", {}), ("zoom", {"lo": 20_000, "hi": 30_000})):
            times, cpu = [], []
            for _ in range(5):
                t0, c0 = time.perf_counter(), sum(server.cpu_times()[:2])
                r = c.get("/api/series", params={"runs": specs, "name": "loss", "buckets": 300, **extra})
                r.raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((sum(server.cpu_times()[:2]) - c0) * 1000)
            assert len(r.json()["series"]) == runs and r.json()["series"][0]["count"] > 0
            out[f"api_{case}_p50_ms"] = statistics.median(times)
            out[f"api_{case}_cpu_ms"] = statistics.median(cpu)
    return out


_EXPAND = """async () => {
  const t0 = performance.now();
  document.querySelector("g.node[data-step='part'] g.head").dispatchEvent(new MouseEvent("click", { bubbles: true }));
  while (document.querySelectorAll("rect.task-cell").length < 1000) await new Promise((r) => requestAnimationFrame(r));
  return performance.now() - t0;
}"""


def dag_timings(browser, base: str, repeat: int = 3) -> dict:
    """The run page of a 1,000-way foreach: navigation start to the DAG drawn (its foreach node
    in the DOM), then a click on that node to its 1,000 task squares drawn; median of ``repeat``."""
    import httpx

    run = httpx.get(f"{base}/api/runs", params={"limit": 1, "where": "status = 'succeeded'"}).json()["rows"][0]
    drawn, expanded = [], []
    for _ in range(repeat):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/#/run/{run['pathspec']}", wait_until="commit")
        drawn.append(page.wait_for_function(
            "() => document.querySelector(\"svg.dag g.node[data-step='part']\") ? performance.now() : false",
            timeout=120_000, polling="raf").json_value())
        expanded.append(page.evaluate(_EXPAND))
        page.close()
    return {"drawn_ms": drawn, "expand_ms": expanded}


def serve_ui(home: Path, folder: str):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "ui", "--port", str(port)],
                            env={**os.environ, "KEEL_HOME": str(home)}, cwd=folder, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/api/runs?limit=1", proc)
    return proc, base


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    global RUNS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--mlflow", action="store_true", help="also time `mlflow ui` (needs benchmarks/.venv-mlflow)")
    parser.add_argument("--store", type=Path, help="keep the seeded stores in this folder and reuse them next time")
    parser.add_argument("--parts", default="runs,chart,dag",
                        help="which to measure: runs (the runs page), chart (100 runs x 100,000 points "
                             "overlaid), dag (a 1,000-way foreach's graph); comma-separated")
    parser.add_argument("--chart-runs", type=int, default=CHART_RUNS)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    RUNS = args.runs
    from playwright.sync_api import sync_playwright

    js = b"".join(p.read_bytes() for p in sorted(STATIC.glob("*.js")))
    results: dict = {"runs": RUNS, "machine": f"{os.cpu_count()} cores", "load_average": os.getloadavg(), "js_bytes": len(js),
                     "js_gzip_bytes": len(gzip.compress(js))}
    with contextlib.ExitStack() as stack:
        if args.store:
            args.store.mkdir(parents=True, exist_ok=True)
            folder = str(args.store.resolve())
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="keel-ui-bench-"))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox", "--disable-gpu"])
            if "chart" in parts:
                home = Path(folder) / "chart" / ".keel"
                if not (home / "metadata.db").exists():
                    log(f"seeding {args.chart_runs} runs x {CHART_POINTS:,} points ...")
                    t0 = time.perf_counter()
                    seed_chart(home, args.chart_runs)
                    results["chart_seed_s"] = time.perf_counter() - t0
                proc, base = serve_ui(home, folder)
                try:
                    log("overlaid chart ...")
                    results["chart"] = chart_timings(browser, base, proc.pid, args.chart_runs)
                    results["chart"]["runs"] = args.chart_runs
                finally:
                    stop(proc)
            if "dag" in parts:
                home = Path(folder) / "dag" / ".keel"
                if not (home / "metadata.db").exists():
                    log("running a 1,000-way foreach ...")
                    home.parent.mkdir(parents=True, exist_ok=True)
                    seed_dag(home)
                proc, base = serve_ui(home, folder)
                try:
                    log("DAG of a 1,000-way foreach ...")
                    results["dag"] = dag_timings(browser, base)
                finally:
                    stop(proc)
            browser.close()
        if "runs" in parts:
            home = Path(folder) / ".keel"
            if (home / "metadata.db").exists():
                log(f"reusing the store in {home}")
            else:
                log(f"seeding {RUNS:,} runs ...")
                seed_keel(home, RUNS)
            runs_page(results, home, folder)
        if args.mlflow and "runs" in parts:
            results["mlflow_first_rows_ms"] = mlflow_first_rows(Path(folder))
    table = report(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ui.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "ui.md").write_text(table + "\n")


def runs_page(results: dict, home: Path, folder: str) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "KEEL_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "ui", "--port", str(port)], env=env,
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/api/runs?limit=1", proc)
        log("API timings ...")
        results["api"] = api_timings(base, proc.pid)
        log("first rows in Chromium ...")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--headless=new", "--no-sandbox", "--disable-gpu"])
            results["keel_first_rows_ms"] = first_rows_ms(
                browser, base + "/#/runs", "document.querySelector('table.runs tbody tr')")
            results["keel_round_trip_ms"] = round_trips(browser, base)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)


def mlflow_first_rows(folder: Path) -> list[float]:
    """The same runs (params and last metric values) in MLflow, then `mlflow ui`'s runs page."""
    ml_python = HERE / ".venv-mlflow" / "bin" / "python"
    if not ml_python.exists():
        raise SystemExit("run benchmarks/tracking_bench.py once first: it creates benchmarks/.venv-mlflow")
    # One run through MLflow's client (its schema, its rows), then cloned in bulk in its SQLite
    # database with each run's own id, name, params and metrics: 10,000 runs through the client
    # take an hour on a busy machine, the clones seconds; `mlflow ui` reads the same rows.
    seed = f'''
import sqlite3, uuid
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
mlflow.set_tracking_uri("sqlite:///{folder}/mlflow.db")
exp = mlflow.set_experiment("bench").experiment_id
c = MlflowClient()
def pv(i, p): return str(((i * 7919 + p * 104729) % 1000) / 1000)
def mv(i, m): return ((i * 31 + m * 17) % 100) / 100
r = c.create_run(exp, run_name="bench-00001")
c.log_batch(r.info.run_id, params=[Param(f"p{{p}}", pv(1, p)) for p in range({PARAMS})],
            metrics=[Metric(f"m{{m}}", mv(1, m), 0, 0) for m in range({METRICS})])
c.set_terminated(r.info.run_id)
db = sqlite3.connect("{folder}/mlflow.db")
tid = r.info.run_id
def rows(table):
    cur = db.execute(f"SELECT * FROM {{table}} WHERE run_uuid = ?", (tid,))
    return [d[0] for d in cur.description], cur.fetchall()
tables = {{t: rows(t) for t in ("runs", "params", "metrics", "latest_metrics", "tags")}}
with db:
    for i in range(2, {RUNS} + 1):
        new = uuid.uuid4().hex
        for t, (cols, found) in tables.items():
            out = []
            for row in found:
                row = dict(zip(cols, row))
                row["run_uuid"] = new
                if t == "runs":
                    row["name"] = f"bench-{{i:05d}}"
                    row["start_time"] += i
                    row["end_time"] += i
                    row["artifact_uri"] = row["artifact_uri"].replace(tid, new)
                elif t == "tags" and row["key"] == "mlflow.runName":
                    row["value"] = f"bench-{{i:05d}}"
                elif t == "params":
                    row["value"] = pv(i, int(row["key"][1:]))
                elif t in ("metrics", "latest_metrics"):
                    row["value"] = mv(i, int(row["key"][1:]))
                out.append(tuple(row[c] for c in cols))
            db.executemany(f"INSERT INTO {{t}} ({{', '.join(cols)}}) VALUES ({{', '.join('?' * len(cols))}})", out)
print(exp)
'''
    log(f"seeding MLflow with {RUNS:,} runs ...")
    (folder / "mlflow.db").unlink(missing_ok=True)
    exp = subprocess.run([str(ml_python), "-c", seed], capture_output=True, text=True, check=True,
                         cwd=folder).stdout.split()[-1]
    port = free_port()
    proc = subprocess.Popen([str(ml_python), "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
                             "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # mlflow ui starts uvicorn workers and a job runner: slow on a busy machine.
        wait_http(f"http://127.0.0.1:{port}/health", proc, seconds=600)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox", "--disable-gpu"])
            # MLflow 3 opens an experiment on its GenAI overview; the runs table is the "Model training" view.
            out = first_rows_ms(browser, f"http://127.0.0.1:{port}/#/experiments/{exp}/runs?workflowType=machine_learning",
                                "document.body && document.body.innerText.includes('bench-')", timeout_ms=600_000)
            browser.close()
        return out
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)     # its whole process group: workers and job runner too
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def report(r: dict) -> str:
    lines = ["| case | Keel | mlflow ui | ratio |", "|---|---|---|---|"]
    if "chart" in r:
        c = r["chart"]
        lines.append(f"| compare page of {c['runs']} runs x {CHART_POINTS:,} points: overlaid chart drawn "
                     f"(median of {len(c['drawn_ms'])}; its series answered at; server CPU for the page) | "
                     f"{statistics.median(c['drawn_ms']):.0f} ms (answered at {statistics.median(c['series_answered_ms']):.0f} ms; "
                     f"{statistics.median(c['server_cpu_per_page_ms']):.0f} ms CPU) | | |")
        lines.append(f"| GET /api/series: {c['runs']} runs bucketed to 300 in one pass, p50 wall / server CPU | "
                     f"{c['api_all_p50_ms']:.0f} ms / {c['api_all_cpu_ms']:.0f} ms CPU | | |")
        lines.append(f"| the same zoomed to 10% of the steps | "
                     f"{c['api_zoom_p50_ms']:.0f} ms / {c['api_zoom_cpu_ms']:.0f} ms CPU | | |")
    if "dag" in r:
        d = r["dag"]
        lines.append(f"| run page of a 1,000-way foreach: DAG drawn / foreach node expanded to its tasks "
                     f"(median of {len(d['drawn_ms'])}) | {statistics.median(d['drawn_ms']):.0f} / "
                     f"{statistics.median(d['expand_ms']):.0f} ms | | |")
    if "keel_first_rows_ms" not in r:
        lines.append(f"\n{r['machine']}, load average {', '.join(f'{x:.1f}' for x in r['load_average'])} at the start.")
        return "\n".join(lines)
    k = statistics.median(r["keel_first_rows_ms"])
    if "mlflow_first_rows_ms" in r:
        m = statistics.median(r["mlflow_first_rows_ms"])
        lines.append(f"| runs page of {r['runs']:,} runs: first rows painted (median of 5) | {k:.0f} ms | {m:.0f} ms | {m / k:.1f}x |")
    else:
        lines.append(f"| runs page of {r['runs']:,} runs: first rows painted (median of 5) | {k:.0f} ms | not run | |")
    if "keel_round_trip_ms" in r:
        rt = r["keel_round_trip_ms"]
        lines.append(f"| click to rows redrawn in the browser: sort / filter (median of 6) | "
                     f"{rt['sort_ms']:.0f} / {rt['filter_ms']:.0f} ms | | |")
    for name, v in r["api"].items():
        if isinstance(v, dict):
            lines.append(f"| GET /api/runs?limit=50 ({name}) p50 / p95 wall, server CPU per call | "
                         f"{v['p50_ms']:.0f} / {v['p95_ms']:.0f} ms, {v['server_cpu_ms']:.0f} ms CPU | | |")
    lines.append(f"| a 100,000-point series bucketed to 400 (p50) | {r['api']['series_100k_p50_ms']:.0f} ms | | |")
    lines.append(f"| JavaScript shipped (gzipped) | {r['js_gzip_bytes'] / 1024:.1f} KB | | |")
    lines.append(f"\n{r['machine']}, load average {', '.join(f'{x:.1f}' for x in r['load_average'])} at the start.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
