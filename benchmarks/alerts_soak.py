"""Alerts soak: randomized runs around the thresholds, with the orchestrator and the watcher
killed with SIGKILL at random points; every alert must fire exactly once.

    .venv/bin/python benchmarks/alerts_bench.py --soak 1000      # the issue's 1,000 runs
    from alerts_soak import soak; report = soak(tmp_home, runs=30)   # tests/alerts/test_soak.py

What runs (all real processes on a real SQLite store, forked from this one):

- an **orchestrator** writes runs through the store's API exactly as a run's scheduler does
  (``new_run``, a task ``running``, metric points in batches, the task's end, the run's end,
  each its own transaction with its events). Metric values sit on and around the thresholds
  (``acc`` below 0.8 for 2 points in a row, the running max of ``loss`` above 1.0). At a random
  point of some runs it SIGKILLs itself, and the parent SIGKILLs it at random times too: the
  run it was writing is left ``running`` with a dead scheduler, which the watcher must record
  as crashed (``run.crashed``) and alert on. A new orchestrator goes on until there are N runs.
- a **watcher** (``keel alerts watch``: ``Watcher`` with its cursor in the store) evaluates the
  rules and delivers to a webhook receiver in this process; the parent SIGKILLs it at random
  times and starts a new one, which resumes at the cursor the last one saved.

At the end a last watcher drains what is left; then an oracle, written apart from the engine,
decides from the stored facts (each run's final status and metric points) which alerts are due,
and the report counts false, missed and duplicate firings (each must be 0), and deliveries
(every firing delivered; a duplicate delivery is allowed only for a watcher killed between
sending and recording, and carries the same delivery id for the receiver to drop).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

FLOW = "Soak"
ACC = (0.79, 0.7999, 0.8, 0.8001, 0.81)          # acc below 0.8, 2 in a row
LOSS = (0.99, 1.0, 1.0001, 1.01)                 # running max of loss above 1.0


REAL_FLOW = f"""
import random, time
from keel import FlowSpec, Parameter, current, step

class SoakReal(FlowSpec):
    seed = Parameter("seed", default=0)

    @step
    def start(self):
        open(f"started-{{self.seed}}", "w").close()   # the soak kills the run from now on
        rng = random.Random(self.seed)
        for i in range(rng.randrange(1, 6)):
            current.log_metric("acc", rng.choice({ACC!r}), step=i)
            if rng.random() < 0.5:
                current.log_metric("loss", rng.choice({LOSS!r}), step=i)
        time.sleep(rng.uniform(0, 2))
        if rng.random() < 0.3:
            raise ValueError("bad")
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    SoakReal()
"""


def rules(url: str) -> list[dict[str, Any]]:
    """The soak's rules, for every flow (the orchestrator's ``Soak`` and the real ``SoakReal``)."""
    hook = [{"webhook": url}]
    return [{"name": "failed", "when": {"event": "failed"}, "notify": hook},
            {"name": "crashed", "when": {"event": "crashed"}, "notify": hook},
            {"name": "acc-low", "when": {"event": "metric", "metric": "acc", "below": 0.8, "consecutive": 2},
             "notify": hook},
            {"name": "loss-high", "when": {"event": "metric", "metric": "loss", "agg": "max", "above": 1.0},
             "notify": hook}]


def oracle(status: str, acc: list[float], loss: list[float]) -> set[str]:
    """The alerts a run with these final facts must raise (independent of keel.alerts.engine)."""
    due = set()
    if status in ("failed", "crashed"):
        due.add(status)
    if any(a < 0.8 and b < 0.8 for a, b in zip(acc, acc[1:])):
        due.add("acc-low")
    if any(v > 1.0 for v in loss):
        due.add("loss-high")
    return due


# -- the processes -------------------------------------------------------------------------------
def _orchestrate(runs: int, seed: int, crash_rate: float) -> None:
    """A forked child: make runs until there are ``runs``; SIGKILL itself inside some of them."""
    from keel.store import Store
    from keel.store.records import MetricsWrite, TaskWrite

    rng = random.Random(seed)
    md = Store.from_env().metadata
    while (md.runs.latest_run_id(FLOW) or 0) < runs:
        crash_at = rng.randrange(1, 6) if rng.random() < crash_rate else None
        run_id = md.runs.new_run(FLOW, params={})
        now = time.time()
        writes: list[Any] = [[TaskWrite(FLOW, run_id, 1, "start", "running", 1, now, started_at=now)]]
        step = 0
        for _ in range(rng.randrange(1, 4)):                      # metric points in 1-3 batches
            points = []
            for _ in range(rng.randrange(1, 4)):
                points.append(("acc", step, rng.choice(ACC), time.time()))
                if rng.random() < 0.5:
                    points.append(("loss", step, rng.choice(LOSS), time.time()))
                step += 1
            writes.append([MetricsWrite(FLOW, run_id, 1, tuple(points))])
        end = "failed" if rng.random() < 0.3 else "succeeded"
        writes.append([TaskWrite(FLOW, run_id, 1, "start", end, 1, now, started_at=now, finished_at=time.time())])
        writes.append(end)
        for i, batch in enumerate(writes, 1):
            if crash_at == i:
                os.kill(os.getpid(), signal.SIGKILL)               # the orchestrator dies mid-run
            if isinstance(batch, str):
                md.runs.set_run_status(FLOW, run_id, batch, error="ValueError: bad" if batch == "failed" else None)
            else:
                md.runs.write_batch(batch)


def _watch(url: str) -> None:
    """A forked child: ``keel alerts watch`` with the soak's rules."""
    from keel.alerts import Rule
    from keel.alerts.watch import Watcher
    from keel.store import Store

    Watcher([Rule(**r) for r in rules(url)], Store.from_env().metadata, name="soak", from_start=True).run(every=0.05)


def _fork(target: Any, *args: Any) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            target(*args)
        except BaseException:  # noqa: BLE001 - a child reports and leaves, never returns to the caller
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


class _Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.firings: dict[int, int] = {}     # firing id -> deliveries received
        self.delivery_ids: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    fid = int(body["firing_id"])
                    receiver.firings[fid] = receiver.firings.get(fid, 0) + 1
                    did = self.headers["X-Keel-Delivery"]
                    receiver.delivery_ids[did] = receiver.delivery_ids.get(did, 0) + 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the soak ------------------------------------------------------------------------------------
class _RealRuns:
    """Real flow runs (``python soak_real.py run``), one at a time, each SIGKILLed at a random
    moment (some finish first); driven from the soak's loop, so no thread forks."""

    def __init__(self, home: Path, count: int, rng: random.Random):
        import subprocess

        self.subprocess, self.rng, self.left = subprocess, rng, count
        self.flow = home / "soak_real.py"
        self.flow.write_text(REAL_FLOW)
        self.proc: Any = None
        self.marker = self.flow
        self.kill_at = 0.0
        self.killed = 0

    def step(self) -> bool:
        """Advance; False once every real run ended."""
        if self.proc is not None:
            if self.kill_at == 0.0 and self.marker.exists():
                self.kill_at = time.monotonic() + self.rng.uniform(0.0, 3.0)   # mid-task, later, or after it ended
            if self.proc.poll() is None and (self.kill_at == 0.0 or time.monotonic() < self.kill_at):
                return True
            if self.proc.poll() is None:
                self.proc.kill()
                self.killed += 1
            self.proc.wait()
            self.proc = None
        if self.left == 0:
            return False
        self.left -= 1
        run_seed = self.rng.randrange(10**6)
        self.marker = self.flow.parent / f"started-{run_seed}"
        self.proc = self.subprocess.Popen(
            [sys.executable, str(self.flow), "run", "--seed", str(run_seed), "--quiet"],
            cwd=self.flow.parent, stdout=self.subprocess.DEVNULL, stderr=self.subprocess.DEVNULL)
        self.kill_at = 0.0
        return True

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def soak(home: str | Path, runs: int = 1000, *, seed: int = 0, crash_rate: float = 0.05, real: int = 0,
         kill_every: tuple[float, float] = (0.05, 0.6), timeout: float = 600.0) -> dict[str, Any]:
    """Run the soak in ``home`` (an empty KEEL_HOME); returns the report (see the module).
    ``real`` real flow runs, SIGKILLed at random moments, run beside the orchestrator's."""
    os.environ["KEEL_HOME"] = str(home)
    os.environ.pop("KEEL_METADATA_URL", None)
    os.environ.setdefault("KEEL_ALERT_RETRY_SECONDS", "0.05")
    os.environ.setdefault("KEEL_ALERT_LEASE_SECONDS", "1")   # a killed watcher's claim comes back soon
    import keel.alerts.watch  # noqa: F401 - imported once here, so forked children start warm
    from keel.store import Store

    Store.from_env().metadata.close()   # the store exists (schema, migrations) before anyone is killed

    rng = random.Random(seed)
    receiver = _Receiver()
    deadline = time.monotonic() + timeout
    kills = {"orchestrator": 0, "watcher": 0, "self": 0}
    generation = 0
    started = time.perf_counter()
    cpu0 = os.times()
    real_runs = _RealRuns(Path(home), real, random.Random(seed))
    orchestrator = _fork(_orchestrate, runs, seed * 1000 + generation, crash_rate)
    watcher = _fork(_watch, receiver.url)
    done = False
    try:
        next_kill = time.monotonic() + rng.uniform(*kill_every)
        while real_runs.step() or not done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the soak did not finish in {timeout} s")
            if done:
                time.sleep(0.05)
                continue
            pid, status = os.waitpid(orchestrator, os.WNOHANG)
            if pid:
                if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                    done = True
                    continue
                if os.WIFEXITED(status):
                    raise RuntimeError("an orchestrator failed (its traceback is above)")
                kills["self"] += 1
                generation += 1
                orchestrator = _fork(_orchestrate, runs, seed * 1000 + generation, crash_rate)
            if time.monotonic() >= next_kill:
                if kills["watcher"] == 0 or rng.random() < 0.5:   # the first kill is always the watcher's
                    os.kill(watcher, signal.SIGKILL)
                    os.waitpid(watcher, 0)
                    kills["watcher"] += 1
                    watcher = _fork(_watch, receiver.url)
                else:
                    os.kill(orchestrator, signal.SIGKILL)
                    _, status = os.waitpid(orchestrator, 0)
                    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                        done = True                            # it had just finished
                        continue
                    kills["orchestrator"] += 1
                    generation += 1
                    orchestrator = _fork(_orchestrate, runs, seed * 1000 + generation, crash_rate)
                next_kill = time.monotonic() + rng.uniform(*kill_every)
            time.sleep(0.005)
        generated = time.perf_counter() - started
        os.kill(watcher, signal.SIGKILL)       # one last kill, then a watcher that finishes the work
        os.waitpid(watcher, 0)
        kills["watcher"] += 1
        kills["real_runs"] = real_runs.killed
        return _finish(receiver, runs, kills, generated, started, cpu0, deadline)
    finally:
        real_runs.close()
        for pid in (orchestrator, watcher):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        receiver.close()


def _finish(receiver: _Receiver, runs: int, kills: dict[str, int], generated: float, started: float,
            cpu0: Any, deadline: float) -> dict[str, Any]:
    from keel.alerts import Rule
    from keel.alerts.watch import Watcher
    from keel.store import Store

    md = Store.from_env().metadata
    watcher = Watcher([Rule(**r) for r in rules(receiver.url)], md, name="soak", from_start=True)
    while True:
        watcher.tick()
        firings = md.alerts.firings(limit=None)
        pending = [d for f in firings for d in md.alerts.deliveries(f.id) if d.status != "delivered"]
        if not pending and md.alerts.cursor("soak") == md.events.last_id():
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} deliveries still pending at the deadline")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    cpu = os.times()
    expected: set[tuple[str, int]] = set()
    statuses: dict[str, int] = {}
    all_runs = md.runs.list_runs()
    for run in all_runs:
        series = md.metrics.run_metrics(run.flow, run.run_id)
        acc = [v for _, v, _ in sorted(series.get("acc", []), key=lambda p: p[0])]
        loss = [v for _, v, _ in sorted(series.get("loss", []), key=lambda p: p[0])]
        statuses[f"{run.flow}:{run.status}"] = statuses.get(f"{run.flow}:{run.status}", 0) + 1
        expected |= {(rule, run.flow, run.run_id) for rule in oracle(run.status, acc, loss)}
    got = [(f.rule, f.flow, f.run_id) for f in firings]
    with receiver.lock:
        delivered = dict(receiver.firings)
    return {
        "runs": len(all_runs), "statuses": statuses, "kills": kills,
        "expected": len(expected), "firings": len(got),
        "false": sorted(set(got) - expected), "missed": sorted(expected - set(got)),
        "duplicates": len(got) - len(set(got)),
        "undelivered": sorted(f.id for f in firings if f.id not in delivered),
        "duplicate_deliveries": sum(n - 1 for n in delivered.values()),
        "wall_s": round(elapsed, 2), "generate_s": round(generated, 2),
        "parent_cpu_s": round(cpu.user + cpu.system - cpu0.user - cpu0.system, 2),
        "children_cpu_s": round(cpu.children_user + cpu.children_system - cpu0.children_user
                                - cpu0.children_system, 2),
    }


if __name__ == "__main__":
    import tempfile

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(soak(tmp, n), indent=2))
