"""Alerts: event -> webhook delivered, p50/p95/max, through the two evaluators.

    .venv/bin/python benchmarks/alerts_bench.py               # 100 events each
    .venv/bin/python benchmarks/alerts_bench.py --events 30
    .venv/bin/python benchmarks/alerts_bench.py --soak 1000 --real 10   # + the soak (alerts_soak.py)

A SQLite store in a temp KEEL_HOME and a webhook receiver on loopback (http.server in a
thread, checking the HMAC signature). Each event is a run's ``run.failed`` written by
``set_run_status``, as a run's scheduler writes it; the clock runs from just before that write
to the receiver having the notification. Evaluators:

- ``run``: the run's own process (``RunAlerts``: a thread that polls the run's events every
  0.2 s, records the firing in the outbox and delivers it);
- ``watch``: ``keel alerts watch`` (``Watcher`` over the whole store, same tick).

Target (issue 14): p95 under 1 s.

``--soak N``: N randomized runs around the thresholds with the orchestrator and the watcher
SIGKILLed at random points, plus ``--real K`` real flow runs SIGKILLed (see ``alerts_soak.py``);
target: zero false, missed and duplicate firings, every firing delivered.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

SECRET = "bench"


def receiver() -> tuple[Any, dict[str, float], threading.Condition]:
    arrived: dict[str, float] = {}
    cond = threading.Condition()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert self.headers["X-Keel-Signature"] == good
            import json

            flow = json.loads(body)["flow"]
            with cond:
                arrived.setdefault(flow, time.perf_counter())
                cond.notify_all()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrived, cond


def measure(mode: str, n: int, url: str, arrived: dict[str, float], cond: threading.Condition) -> list[float]:
    from keel.alerts import Rule
    from keel.alerts.watch import RunAlerts, Watcher
    from keel.store import Store

    md = Store.from_env().metadata
    rule = Rule(name=f"failed-{mode}", when={"event": "failed"}, notify=[{"webhook": url, "secret": SECRET}])
    watcher = None
    stop = threading.Event()
    if mode == "watch":
        watcher = Watcher([rule], md)
        threading.Thread(target=watcher.run, kwargs={"until": stop.is_set}, daemon=True).start()
    out = []
    for i in range(n):
        flow = f"{mode}{i}"
        run_id = md.runs.new_run(flow, params={})
        alerts = RunAlerts([rule], md, flow, run_id).start() if mode == "run" else None
        time.sleep(0.05)   # the run is under way when it fails
        t0 = time.perf_counter()
        md.runs.set_run_status(flow, run_id, "failed", error="boom")
        with cond:
            if not cond.wait_for(lambda: flow in arrived, timeout=10):
                raise SystemExit(f"{mode}: event {i} was not delivered within 10 s")
        out.append(arrived[flow] - t0)
        if alerts is not None:
            alerts.close()
    stop.set()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--soak", type=int, default=0, help="then the soak with this many runs (1000)")
    parser.add_argument("--real", type=int, default=10, help="real runs SIGKILLed during the soak")
    args = parser.parse_args()
    if args.events:
        latency(args.events)
    if args.soak:
        soak(args.soak, args.real)


def soak(runs: int, real: int) -> None:
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from alerts_soak import soak as run_soak

    with tempfile.TemporaryDirectory() as home:
        report = run_soak(home, runs, real=real, timeout=1800)
    bad = len(report["false"]) + len(report["missed"]) + report["duplicates"] + len(report["undelivered"])
    print(f"soak: {report['runs']} runs, {report['firings']} firings of {report['expected']} due; "
          f"false {len(report['false'])}, missed {len(report['missed'])}, duplicates {report['duplicates']}, "
          f"undelivered {len(report['undelivered'])} ({'ok' if not bad else 'FAILED'}); "
          f"duplicate deliveries {report['duplicate_deliveries']} (same delivery id)")
    print(f"  kills {report['kills']}; wall {report['wall_s']} s, cpu parent {report['parent_cpu_s']} s "
          f"+ children {report['children_cpu_s']} s")
    print("  " + json.dumps(report["statuses"], sort_keys=True))
    if bad:
        raise SystemExit(1)


def latency(events: int) -> None:
    args = argparse.Namespace(events=events)
    with tempfile.TemporaryDirectory() as home:
        os.environ["KEEL_HOME"] = home
        server, arrived, cond = receiver()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        print(f"event -> webhook delivered, {args.events} events each (SQLite store, loopback webhook)")
        for mode in ("run", "watch"):
            xs = sorted(measure(mode, args.events, url, arrived, cond))
            p95 = xs[min(len(xs) - 1, int(round(0.95 * len(xs))) - 1)]
            print(f"  {mode:<6} p50 {statistics.median(xs) * 1000:6.0f} ms   p95 {p95 * 1000:6.0f} ms   "
                  f"max {xs[-1] * 1000:6.0f} ms   target p95 < 1000 ms: {'ok' if p95 < 1 else 'MISSED'}")
        server.shutdown()


if __name__ == "__main__":
    main()
