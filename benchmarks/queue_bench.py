"""Queue add-on: 20,000 small messages drained by 10 consumer processes, side by side with peers.

    .venv/bin/python benchmarks/queue_bench.py                    # Keel SQLite and Redis, Huey, Celery
    .venv/bin/python benchmarks/queue_bench.py --skip-peers       # Keel only
    .venv/bin/python benchmarks/queue_bench.py --messages 5000 --consumers 4

One harness for every system: the queue is filled first (timed apart, as "put"), then the
consumers are started and each says "ready" once it has imported its library and connected;
then one "go" line on their stdin starts the clock, and it stops when the last consumer has
seen the queue drained and exited. Each message is a small dict, taken, handled (nothing)
and acknowledged one at a time.

- Keel SQLite: ``KEEL_HOME/queues.db``; Keel Redis: Redis Streams on a redis-server started here.
- Huey (SQLite): ``SqliteHuey``'s storage, ``enqueue`` / ``dequeue`` (no ack exists there: a
  dequeued message is gone, at most once, which is less work than Keel's at-least-once).
  Its busy timeout is raised to 120 s: with the default 5 s, consumers die of "database is
  locked" on a loaded 2-core machine.
- Celery (Redis): ``send_task`` of a no-op task, and 10 ``celery worker --pool solo`` processes;
  since Celery workers do not stop when the queue is empty, each task records its end time in
  Redis and the drain time runs from "go" to the last task's end.

Huey and Celery run from their own virtualenv, benchmarks/.venv-queue-peers, created on first use
(``pip install huey celery[redis]``); a peer that does not install is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_VENV = HERE / ".venv-queue-peers"
PEERS_PY = PEERS_VENV / "bin" / "python"
REDIS_PID: list[int | None] = [None]   # the redis-server started here, for its CPU time


# -- consumers (run as: queue_bench.py --consume SYSTEM ARG) ------------------------------------
def _consume(system: str, arg: str) -> None:
    if system == "keel":
        from keel.addons.queue import Queue, QueueSettings

        q = Queue("bench", QueueSettings(url=arg or None))
        q.backend.stats("bench")  # connected
        print("ready", flush=True)
        sys.stdin.readline()
        for msg in q:
            msg.ack()
    elif system == "huey":
        from huey import SqliteHuey

        # Huey's default 5 s busy timeout ends in "database is locked" with 10 consumers here
        storage = SqliteHuey("bench", filename=arg, timeout=120).storage
        storage.queue_size()
        print("ready", flush=True)
        sys.stdin.readline()
        while storage.dequeue() is not None:
            pass
    else:
        raise SystemExit(f"unknown system {system}")


# -- the harness ------------------------------------------------------------------------------
def _drain(cmd: list[str], consumers: int, env: dict[str, str]) -> float:
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
             for _ in range(consumers)]
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"a consumer did not start: {' '.join(cmd)}")
    started = time.perf_counter()
    cpu0 = os.times()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        if p.wait(600) != 0:
            raise RuntimeError(f"a consumer failed (exit {p.returncode}): {' '.join(cmd)}")
    cpu = os.times()
    _drain.cpu_s = (cpu.children_user + cpu.children_system  # type: ignore[attr-defined]
                    - cpu0.children_user - cpu0.children_system)
    return time.perf_counter() - started


def _proc_cpu(pid: int | None) -> float:
    """CPU seconds a process (redis-server) has used so far; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def bench_keel(url: str | None, home: Path, messages: int, consumers: int) -> dict[str, float]:
    os.environ["KEEL_HOME"] = str(home)
    from keel.addons.queue import Queue, QueueSettings

    q = Queue("bench", QueueSettings(url=url))
    q.backend.purge("bench")
    t0 = time.perf_counter()
    q.put_many({"i": i, "payload": "x" * 32} for i in range(messages))
    put_s = time.perf_counter() - t0
    env = dict(os.environ, KEEL_HOME=str(home))
    server0 = _proc_cpu(REDIS_PID[0]) if url else 0.0
    drain_s = _drain([sys.executable, __file__, "--consume", "keel", url or ""], consumers, env)
    server_cpu = _proc_cpu(REDIS_PID[0]) - server0 if url else 0.0
    left = q.stats()
    if not left.empty:
        raise RuntimeError(f"keel left messages behind: {left}")
    return {"put_s": put_s, "drain_s": drain_s, "consumers_cpu_s": _drain.cpu_s,  # type: ignore[attr-defined]
            "server_cpu_s": server_cpu}


def bench_huey(home: Path, messages: int, consumers: int) -> dict[str, float]:
    db = str(home / "huey.db")
    fill = ("import sys, time, pickle; from huey import SqliteHuey; s = SqliteHuey('bench', filename=sys.argv[1]).storage; "
            "t = time.perf_counter(); [s.enqueue(pickle.dumps({'i': i, 'payload': 'x' * 32})) for i in range(int(sys.argv[2]))]; "
            "print(time.perf_counter() - t)")
    put_s = float(subprocess.run([str(PEERS_PY), "-c", fill, db, str(messages)], check=True, capture_output=True,
                                 text=True).stdout)
    drain_s = _drain([str(PEERS_PY), __file__, "--consume", "huey", db], consumers, dict(os.environ))
    return {"put_s": put_s, "drain_s": drain_s}


_CELERY_APP = """
import time, redis
from celery import Celery
import os
URL = os.environ["BENCH_REDIS_URL"]
app = Celery("bench", broker=URL)
app.conf.worker_prefetch_multiplier = 1
app.conf.task_acks_late = True
_r = redis.Redis.from_url(URL)

@app.task(name="bench.noop", ignore_result=True)
def noop(body):
    _r.set("bench:last", time.time())
    _r.incr("bench:done")
"""


def bench_celery(redis_url: str, home: Path, messages: int, consumers: int) -> dict[str, float]:
    (home / "celery_bench_app.py").write_text(_CELERY_APP)
    env = dict(os.environ, BENCH_REDIS_URL=redis_url, PYTHONPATH=str(home))
    fill = ("import time, redis; from celery_bench_app import app, noop, URL; redis.Redis.from_url(URL).flushdb(); "
            "t = time.perf_counter()\n"
            "with app.producer_or_acquire() as p:\n"
            "    [noop.apply_async(({'i': i, 'payload': 'x' * 32},), producer=p) for i in range(int(__import__('sys').argv[1]))]\n"
            "print(time.perf_counter() - t)")
    put_s = float(subprocess.run([str(PEERS_PY), "-c", fill, str(messages)], check=True, capture_output=True,
                                 text=True, env=env, cwd=home).stdout.strip().splitlines()[-1])
    import redis

    client = redis.Redis.from_url(redis_url)
    celery = str(PEERS_VENV / "bin" / "celery")
    started = time.time()
    procs = [subprocess.Popen([celery, "-A", "celery_bench_app", "worker", "--pool", "solo", "--loglevel", "WARNING",
                               "-n", f"w{i}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                              cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(consumers)]
    try:
        deadline = time.monotonic() + 600
        while int(client.get("bench:done") or 0) < messages:
            if time.monotonic() > deadline:
                raise RuntimeError("celery did not drain the queue in 600 s")
            time.sleep(0.05)
        drain_s = float(client.get("bench:last")) - started  # includes the workers' start-up
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    return {"put_s": put_s, "drain_s": drain_s}


def _ensure_peers() -> bool:
    check = [str(PEERS_PY), "-c", "import huey, celery, redis"]
    if PEERS_PY.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return True
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEERS_VENV)], check=True)
    got = subprocess.run([str(PEERS_PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "huey",
                          "celery[redis]"], capture_output=True, text=True)
    if got.returncode != 0:
        print(f"peers not installed: {got.stderr[-500:]}", file=sys.stderr)
    return subprocess.run(check, capture_output=True).returncode == 0


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    import redis

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--consume":
        _consume(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--consumers", type=int, default=10)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    ap.add_argument("--redis-only", action="store_true", help="Keel on Redis only (implies --skip-peers)")
    args = ap.parse_args()
    args.skip_peers = args.skip_peers or args.redis_only
    work = Path(tempfile.mkdtemp(prefix="keel-queue-bench-"))
    redis_proc, redis_url = _start_redis(work) if shutil.which("redis-server") else (None, "")
    REDIS_PID[0] = redis_proc.pid if redis_proc is not None else None
    results: dict[str, dict[str, float] | str] = {}
    try:
        if not args.redis_only:
            results["keel sqlite"] = bench_keel(None, work / "sqlite", args.messages, args.consumers)
        if redis_url:
            results["keel redis"] = bench_keel(redis_url, work / "redis", args.messages, args.consumers)
        if not args.skip_peers and _ensure_peers():
            (work / "huey").mkdir()
            results["huey sqlite"] = bench_huey(work / "huey", args.messages, args.consumers)
            if redis_url:
                (work / "celery").mkdir()
                results["celery redis"] = bench_celery(redis_url, work / "celery", args.messages, args.consumers)
        elif not args.skip_peers:
            results["peers"] = "skipped: huey/celery did not install"
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.messages} messages, {args.consumers} consumer processes, {os.cpu_count()} cores")
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"| system | put (s) | drain (s) | messages/s | consumers CPU (s) | server CPU (s) |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        if isinstance(r, str):
            print(f"| {name} | {r} | | | | |")
        else:
            print(f"| {name} | {r['put_s']:.2f} | {r['drain_s']:.2f} | {args.messages / r['drain_s']:,.0f} | "
                  f"{r.get('consumers_cpu_s', 0):.2f} | {r.get('server_cpu_s', 0):.2f} |")

    def ratio(a: str, b: str) -> None:
        ra, rb = results.get(a), results.get(b)
        if isinstance(ra, dict) and isinstance(rb, dict):
            print(f"{a} drains {rb['drain_s'] / ra['drain_s']:.2f}x as fast as {b}")

    ratio("keel sqlite", "huey sqlite")
    ratio("keel redis", "celery redis")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
