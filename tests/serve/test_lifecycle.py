"""Following the latest run (hot swap under load), safety, shutdown, batching, workers, projects."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serve_testing import HERE, Server, free_port, train

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}


def _poll(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_newer_successful_run_is_swapped_in_without_a_failed_request(tmp_path):
    home = tmp_path / ".keel"
    train(home)
    srv = Server(home, "Train", "--artifact", "model")
    try:
        srv.wait_ready()
        seen: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def loop() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    try:
                        r = client.post(srv.url + "/predict", json=ROW)
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text}")
                        else:
                            seen.append(r.json()["run"])
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            train(home, "--seed", "1")                              # run 2 succeeds
            _poll(lambda: seen and seen[-1] == "Train/2", 120, "the server to move to Train/2")
            subprocess_failed = subprocess.run([sys.executable, str(HERE / "train_flow.py"), "run", "--fail", "1"],
                                               cwd=tmp_path, env={**__import__("os").environ, "KEEL_HOME": str(home)},
                                               capture_output=True)
            assert subprocess_failed.returncode == 1                # run 3 fails: not served
            n = len(seen)
            _poll(lambda: len(seen) > n + 50, 120, "more requests")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert failures == []
        assert seen[-1] == "Train/2" and seen[0] == "Train/1"
        first_two = seen.index("Train/2")
        assert "Train/1" not in seen[first_two + 200:]               # no flapping back after the swap
        assert "now serving Train/2" in srv.log()
    finally:
        assert srv.stop() == 0


def test_a_non_loopback_host_without_a_token_refuses_to_start(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "keel.cli.main", "serve", "Train", "--host", "0.0.0.0"],
                          env={"PATH": "/usr/bin:/bin", "KEEL_HOME": str(tmp_path / ".keel")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "refusing to serve on 0.0.0.0 without a token" in proc.stderr and "Traceback" not in proc.stderr


def test_a_flow_without_runs_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "keel.cli.main", "serve", "Nope"],
                          env={"PATH": "/usr/bin:/bin", "KEEL_HOME": str(tmp_path / ".keel")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "flow 'Nope' has no successful run to serve" in proc.stderr and "Traceback" not in proc.stderr


def test_with_a_token_every_route_but_health_needs_it(store):
    srv = Server(store, "Train/1", env={"KEEL_SERVE_TOKEN": "tok-123"})
    try:
        srv.wait_ready()
        assert httpx.post(srv.url + "/predict", json=ROW).status_code == 401
        assert httpx.post(srv.url + "/predict", json=ROW, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(srv.url + "/openapi.json").status_code == 401
        ok = httpx.post(srv.url + "/predict", json=ROW, headers={"Authorization": "Bearer tok-123"})
        assert ok.status_code == 200
        for path in ("/health", "/ready", "/v2/health/live", "/v2/health/ready"):
            assert httpx.get(srv.url + path).status_code == 200, path
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def slow_store(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("slow") / ".keel"
    done = subprocess.run([sys.executable, str(HERE / "slow_flow.py"), "run"], cwd=home.parent,
                          env={**os.environ, "KEEL_HOME": str(home)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return home


def test_a_model_that_raises_is_a_500_with_a_request_id_and_the_traceback_only_in_the_log(slow_store):
    srv = Server(slow_store, "Slow")
    try:
        srv.wait_ready()
        r = httpx.post(srv.url + "/predict", json={"instances": [[-1]]})
        assert r.status_code == 500
        rid = r.json()["request_id"]
        assert "Traceback" not in r.text and "negative wait" not in r.text
        assert rid == r.headers["x-request-id"]
        _poll(lambda: rid in srv.log() and "negative wait" in srv.log(), 60, "the traceback in the log")
    finally:
        srv.stop()


def test_sigterm_finishes_the_request_in_flight(slow_store):
    srv = Server(slow_store, "Slow")
    try:
        srv.wait_ready()
        with ThreadPoolExecutor(1) as pool:
            # a 4 s request: on a loaded machine the scrapes that see it in flight take a while
            pending = pool.submit(httpx.post, srv.url + "/predict", json={"instances": [[4.0]]}, timeout=60)
            _poll(lambda: "keel_serve_in_flight 2" in httpx.get(srv.url + "/metrics", timeout=30).text, 60,
                  "the slow request to be in flight")
            srv.proc.send_signal(signal.SIGTERM)
            r = pending.result()
        assert r.status_code == 200 and r.json()["predictions"] == [4.0]
        assert srv.proc.wait(timeout=30) == 0
    finally:
        srv.stop()


def test_micro_batching_answers_each_request_its_own_rows(store):
    # 200 ms to gather a batch: on a loaded machine the 16 clients' requests arrive far apart
    srv = Server(store, "Train/1", "--max-batch-size", "64", "--max-latency-ms", "200")
    try:
        srv.wait_ready()
        rows = [[i / 10, 0.5, -i / 20, 0.0] for i in range(48)]
        single = httpx.post(srv.url + "/predict", json={"instances": rows}).json()["predictions"]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda row: httpx.post(srv.url + "/predict", json={"instances": [row]},
                                                           timeout=30).json()["predictions"], rows))
        assert [a[0] for a in answers] == single
        metrics = httpx.get(srv.url + "/metrics").text
        count = int(next(line.split()[-1] for line in metrics.splitlines()
                         if line.startswith("keel_serve_batch_rows_count")))
        assert count < 1 + len(rows)          # some requests shared a model call
    finally:
        srv.stop()


def _count(text: str) -> float:
    match = re.search(r'keel_serve_requests_total\{route="/predict",status="200"\} (\S+)', text)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow
def test_workers_serve_and_metrics_sum_every_worker(store):
    srv = Server(store, "Train/1", "--artifact", "model", "--workers", "2")
    try:
        srv.wait_ready(timeout=90)
        workers: set[str] = set()
        sent = 0
        while len(workers) < 2 or sent < 20:      # new connections until both workers answered
            assert sent < 400, "one worker answered every connection"
            r = httpx.post(srv.url + "/predict", json=ROW, headers={"Connection": "close"})
            assert r.status_code == 200, r.text
            workers.add(r.headers["x-request-id"][:8])   # ids start with a per-process prefix
            sent += 1
        # a worker counts a request just after sending its answer: a scrape by the other worker
        # may come first on a loaded machine, so wait for the last count, then check every scrape
        _poll(lambda: _count(httpx.get(srv.url + "/metrics", headers={"Connection": "close"}).text) == sent, 60,
              f"the scraped count to reach {sent}")
        for _ in range(6):                       # whichever worker answers the scrape sums both
            text = httpx.get(srv.url + "/metrics", headers={"Connection": "close"}).text
            assert _count(text) == sent, text
            assert "keel_serve_workers 2" in text
    finally:
        assert srv.stop() == 0, srv.log()


@pytest.mark.slow
def test_project_serve_starts_every_endpoint(store):
    import os

    port = free_port()
    project = store.parent / "keel.yaml"
    project.write_text(f"name: demo\nendpoints:\n  - name: churn\n    flow: Train\n    artifact: model\n"
                       f"    port: {port}\n")
    log = open(store.parent / "project-serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "project", "serve", "-f", str(project)],
                            cwd=store.parent, env={**os.environ, "KEEL_HOME": str(store)}, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, (store.parent / "project-serve.log").read_text()
            try:
                return httpx.get(url + "/v2/models/churn").status_code == 200
            except httpx.TransportError:
                return False

        _poll(up, 60, "the churn endpoint")
        r = httpx.post(url + "/v2/models/churn/infer",
                       json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]})
        assert r.status_code == 200 and r.json()["model_name"] == "churn"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        log.close()


def test_past_max_concurrency_requests_get_a_503(slow_store):
    """With --max-concurrency 2, a health check sent while a slow request runs is refused.

    Uvicorn counts open connections, the new one included, so a health check still open when the
    slow request arrives makes the slow request the one refused; then the test tries again (up
    to five times).
    """
    srv = Server(slow_store, "Slow", "--max-concurrency", "2")
    try:
        srv.wait_ready()
        with ThreadPoolExecutor(1) as pool:
            for _ in range(5):
                pending = pool.submit(httpx.post, srv.url + "/predict", json={"instances": [[2.0]]}, timeout=30)
                health = 200
                while health != 503 and not pending.done():
                    health = httpx.get(srv.url + "/health").status_code
                    time.sleep(0.05)
                answer = pending.result(timeout=30)
                assert answer.status_code in (200, 503), answer.text
                if answer.status_code == 200 and health == 503:
                    break
                # Either the slow request met a health check still open, or (on a loaded machine)
                # no health check reached the server while it ran: send it again.
            else:
                raise AssertionError(f"five tries without a 503 beside a slow 200; server log:\n{srv.log()}")
        assert httpx.get(srv.url + "/health").status_code == 200
    finally:
        srv.stop()
