"""Serving, Keel against ``mlflow models serve --env-manager local`` on the same scikit-learn model.

  * single-row requests to ``POST /invocations`` (the route both serve, the same JSON body)
    at concurrency 16: requests per second and p50/p99 latency;
  * cold start: from starting the command to the first 200 of its readiness route
    (Keel: /v2/health/ready, MLflow: /health), the median of ``--cold-repeat`` starts (wall, and
    the CPU of the server's processes); Keel's also with the plain-Python "spin" model;
  * micro-batching (Keel only): a model that spins 2 ms + 10 us a row, at concurrency 64,
    unbatched against ``--max-batch-size 64 --max-latency-ms 5``.

The model: LogisticRegression on 8 features, trained from the same seeded data in each
system's own environment (Keel's venv; MLflow in benchmarks/.venv-mlflow, made on first use).
The load generator is a small asyncio HTTP/1.1 keep-alive client (protocol callbacks on uvloop)
in its own process, the same for every server.

    .venv/bin/python benchmarks/serve_bench.py [--seconds 8] [--cold-repeat 3] [--skip-mlflow]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from tracking_bench import ML_PYTHON, ensure_mlflow  # noqa: E402 - the shared MLflow venv

FEATURES = [f"f{i}" for i in range(8)]
ROW = [0.12, -0.5, 1.3, 0.0, 2.2, -1.1, 0.7, 0.05]
BODY = json.dumps({"dataframe_split": {"columns": FEATURES, "data": [ROW]}}).encode()

TRAIN = '''
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(0)
x = pd.DataFrame(rng.normal(size=(2000, 8)), columns=[f"f{i}" for i in range(8)])
y = (x.f0 + 0.5 * x.f1 - x.f2 + 0.2 * x.f3 > 0).astype(int)
model = LogisticRegression().fit(x, y)
'''

FLOW = f'''
from keel import FlowSpec, step

class SpinModel:
    """Costs 2 ms + 10 us a row of CPU (holding the GIL, as real model code does)."""
    n_features_in_ = 8

    def predict(self, x):
        import time
        end = time.perf_counter() + 0.002 + 1e-5 * len(x)
        while time.perf_counter() < end:
            pass
        return [0] * len(x)

class Bench(FlowSpec):
    @step
    def start(self):
{chr(10).join("        " + line for line in TRAIN.strip().splitlines())}
        self.model = model
        self.spin = SpinModel()
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Bench()
'''

MLFLOW_SAVE = TRAIN + '''
import mlflow.sklearn, sys
mlflow.sklearn.save_model(model, sys.argv[1], input_example=x.head(2))
'''


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the load generator -------------------------------------------------------------------------
class _Client(asyncio.Protocol):
    """One keep-alive connection that sends the request again as soon as an answer is complete.

    A protocol (callbacks on bytes), not asyncio streams: parsing an answer costs one find and
    one header scan, so the generator, which shares the machine's cores with the server, takes
    little CPU from it. Understands Content-Length and chunked answers."""

    def __init__(self, request: bytes, stop_at: float, lat: list[float], errors: list[str],
                 done: asyncio.Future) -> None:
        self.request, self.stop_at, self.lat, self.errors, self.done = request, stop_at, lat, errors, done
        self.buf = b""
        self.started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        now = time.perf_counter()
        if now >= self.stop_at:
            self.transport.close()
            return
        self.started = now
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        at = head.find(b"content-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at)
            total = end + 4 + int(head[at + 15:stop if stop >= 0 else None])
        elif b"transfer-encoding: chunked" in head:
            last = self.buf.find(b"\r\n0\r\n\r\n", end)
            if last < 0:
                return
            total = last + 7
        else:
            total = end + 4
        if len(self.buf) < total:
            return
        self.lat.append(time.perf_counter() - self.started)
        if not self.buf.startswith(b"HTTP/1.1 200"):
            self.errors.append(self.buf[:self.buf.find(b"\r\n")].decode(errors="replace"))
        self.buf = self.buf[total:]
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def load(port: int, path: str, body: bytes, concurrency: int, seconds: float) -> dict:
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def clients(stop_at: float, lat: list[float], errors: list[str]) -> None:
        loop = asyncio.get_running_loop()
        done = [loop.create_future() for _ in range(concurrency)]
        for fut in done:
            await loop.create_connection(lambda f=fut: _Client(request, stop_at, lat, errors, f), "127.0.0.1", port)
        await asyncio.gather(*done)

    async def main() -> tuple[list[float], list[str]]:
        lat: list[float] = []
        errors: list[str] = []
        await clients(time.perf_counter() + min(1.0, seconds / 4), [], [])      # warm up
        await clients(time.perf_counter() + seconds, lat, errors)
        return lat, errors

    t = time.perf_counter()
    try:
        import uvloop  # the same fast loop for every server measured; plain asyncio without it

        lat, errors = uvloop.run(main())
    except ImportError:
        lat, errors = asyncio.run(main())
    wall = time.perf_counter() - t - min(1.0, seconds / 4)
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    cpu = time.process_time()
    return {"requests": len(lat), "rps": len(lat) / wall, "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "errors": len(errors), "concurrency": concurrency,
            "generator_cpu_us_per_request": cpu / max(len(lat), 1) * 1e6}


def role_load(port: int, path: str, concurrency: int, seconds: float, body: str | None = None) -> dict:
    return load(port, path, body.encode() if body else BODY, concurrency, seconds)


def measure_load(port: int, path: str, concurrency: int, seconds: float, body: bytes | None = None) -> dict:
    """The load generator in its own process, so it does not share the benchmark's interpreter."""
    code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import serve_bench as b; "
            f"print(json.dumps(b.role_load({port}, {path!r}, {concurrency}, {seconds}, "
            f"{(body or BODY).decode()!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# -- servers ------------------------------------------------------------------------------------
def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> float:
    import urllib.error
    import urllib.request

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {proc.args}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.01)  # polling interval
    raise SystemExit(f"{url} did not answer in {timeout} s")


def cpu_seconds(proc: subprocess.Popen) -> float:
    """User + system CPU of the server and its children (uvicorn workers, MLflow's own server)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(proc.pid)
        for p in [root, *root.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
    except psutil.NoSuchProcess:
        pass
    return total


def served(proc: subprocess.Popen, port: int, path: str, concurrency: int, seconds: float,
           body: bytes | None = None) -> dict:
    """Load on one server, with the server's CPU per request and the load average around it."""
    before = cpu_seconds(proc)
    result = measure_load(port, path, concurrency, seconds, body)
    result["server_cpu_us_per_request"] = (cpu_seconds(proc) - before) / max(result["requests"], 1) * 1e6
    result["loadavg_1m"] = os.getloadavg()[0]
    return result


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def keel_server(folder: Path, *args: str) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    env = {**os.environ, "KEEL_HOME": str(folder / ".keel")}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "serve", "Bench/1", "--port", str(port), *args],
                            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v2/health/ready", proc)
    return proc, port, time.perf_counter() - t


def mlflow_server(folder: Path) -> tuple[subprocess.Popen, int, float]:
    model_dir = folder / "mlflow-model"
    if not model_dir.exists():
        subprocess.run([str(ML_PYTHON), "-c", MLFLOW_SAVE, str(model_dir)], check=True, cwd=folder,
                       capture_output=True)
    port = free_port()
    mlflow_bin = ML_PYTHON.parent / "mlflow"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"file://{folder}/mlruns",
           "PATH": f"{ML_PYTHON.parent}:{os.environ.get('PATH', '')}"}   # it execs `uvicorn` from PATH
    t = time.perf_counter()
    proc = subprocess.Popen([str(mlflow_bin), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health", proc)
    return proc, port, time.perf_counter() - t


def cold_starts(start, repeat: int) -> dict:
    """Median wall and CPU of ``repeat`` starts to readiness (``start()`` -> (proc, port, seconds))."""
    import statistics

    walls, cpus = [], []
    for _ in range(repeat):
        proc, _port, seconds = start()
        walls.append(seconds)
        cpus.append(cpu_seconds(proc))
        stop(proc)
    return {"cold_start_s": statistics.median(walls), "cold_start_cpu_s": statistics.median(cpus),
            "cold_start_walls_s": walls, "cold_start_loadavg_1m": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--cold-repeat", type=int, default=3)
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench.py").write_text(FLOW)
        subprocess.run([sys.executable, "bench.py", "run", "--quiet"], cwd=folder, check=True, capture_output=True,
                       env={**os.environ, "KEEL_HOME": str(folder / ".keel")})

        log("keel: cold start and single-row requests at concurrency 16 ...")
        cold = cold_starts(lambda: keel_server(folder), args.cold_repeat)
        results["keel_spin_cold"] = cold_starts(lambda: keel_server(folder, "--artifact", "spin"), args.cold_repeat)
        proc, port, _ = keel_server(folder)
        try:
            results["keel"] = {**cold, **served(proc, port, "/invocations", 16, args.seconds)}
        finally:
            stop(proc)
        log(f"  {results['keel']}")

        spin = json.dumps({"instances": [[0.0] * 8]}).encode()
        for label, extra in (("unbatched", ()), ("batched", ("--max-batch-size", "64", "--max-latency-ms", "5"))):
            log(f"keel: a 2 ms + 10 us/row model at concurrency 64, {label} ...")
            proc, port, _ = keel_server(folder, "--artifact", "spin", *extra)
            try:
                results[f"keel_spin_{label}"] = served(proc, port, "/predict", 64, args.seconds, spin)
            finally:
                stop(proc)
            log(f"  {results[f'keel_spin_{label}']}")

        if not args.skip_mlflow:
            ensure_mlflow()
            log("mlflow: cold start and single-row requests at concurrency 16 ...")
            cold = cold_starts(lambda: mlflow_server(folder), args.cold_repeat)
            proc, port, _ = mlflow_server(folder)
            try:
                results["mlflow"] = {**cold, **served(proc, port, "/invocations", 16, args.seconds)}
            finally:
                stop(proc)
            log(f"  {results['mlflow']}")

    k = results["keel"]
    lines = [f"keel   single row, c=16: {k['rps']:.0f} req/s, p50 {k['p50_ms']:.1f} ms, p99 {k['p99_ms']:.1f} ms, "
             f"cold start {k['cold_start_s']:.2f} s ({k['cold_start_cpu_s']:.2f} s CPU), "
             f"server CPU {k['server_cpu_us_per_request']:.0f} us/request, errors {k['errors']}"]
    sc = results["keel_spin_cold"]
    lines.append(f"keel   cold start with the plain-Python spin model: {sc['cold_start_s']:.2f} s "
                 f"({sc['cold_start_cpu_s']:.2f} s CPU)")
    if "mlflow" in results:
        m = results["mlflow"]
        lines.append(f"mlflow single row, c=16: {m['rps']:.0f} req/s, p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms,"
                     f" cold start {m['cold_start_s']:.2f} s ({m['cold_start_cpu_s']:.2f} s CPU), "
                     f"server CPU {m['server_cpu_us_per_request']:.0f} us/request, errors {m['errors']}")
        results["ratios"] = {"rps_keel_over_mlflow": k["rps"] / m["rps"],
                             "p99_keel_over_mlflow": k["p99_ms"] / m["p99_ms"],
                             "cold_start_keel_over_mlflow": k["cold_start_s"] / m["cold_start_s"]}
        lines.append("ratios: " + ", ".join(f"{n} {v:.2f}" for n, v in results["ratios"].items()))
    u, b = results["keel_spin_unbatched"], results["keel_spin_batched"]
    results["batching_speedup"] = b["rps"] / u["rps"]
    lines.append(f"batching (2 ms + 10 us/row, c=64): unbatched {u['rps']:.0f} req/s p99 {u['p99_ms']:.1f} ms; "
                 f"batched {b['rps']:.0f} req/s p99 {b['p99_ms']:.1f} ms: {results['batching_speedup']:.1f}x "
                 f"(server CPU {u['server_cpu_us_per_request']:.0f} / {b['server_cpu_us_per_request']:.0f} us/request)")
    lines.append(f"load average (1 min) during the runs: "
                 + ", ".join(f"{v['loadavg_1m']:.1f}" for v in results.values() if isinstance(v, dict) and "loadavg_1m" in v)
                 + "; at the cold starts: "
                 + ", ".join(f"{v['cold_start_loadavg_1m']:.1f}" for v in results.values()
                             if isinstance(v, dict) and "cold_start_loadavg_1m" in v))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
