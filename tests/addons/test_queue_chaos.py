"""Chaos: 10 consumer processes drain a queue while a random one is SIGKILLed every 0.5 s.

Nothing may be lost, a message may come twice only because its consumer was killed between
handling and acking it (duplicates <= kills), and SQLite never says "database is locked".
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.addons.queue import Queue, QueueSettings

WORKER = str(Path(__file__).with_name("queue_worker.py"))
MESSAGES, CONSUMERS, MAX_KILLS = 3000, 10, 8
# A lease a live consumer cannot lose to a stall: on a loaded machine (ten consumers, SQLite's
# write lock) a heartbeat may come a second late, and a lost lease is a duplicate without a kill.
VISIBILITY = "3.0"


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queues.db'}"
    return str(request.getfixturevalue("fresh_redis"))


@pytest.mark.slow
def test_killing_consumers_loses_nothing_and_duplicates_at_most_once_per_kill(url: str, tmp_path: Path) -> None:
    q = Queue("chaos", QueueSettings(url=url, visibility_timeout=float(VISIBILITY)))
    q.put_many(range(MESSAGES))
    q.close()
    rng = random.Random(7)
    logs: list[Path] = []

    def spawn() -> subprocess.Popen[bytes]:
        out = tmp_path / f"seen-{len(logs)}.txt"
        err = open(tmp_path / f"err-{len(logs)}.txt", "wb")
        logs.append(out)
        # 5 ms of work a message: on a quiet machine the drain still outlasts the first kills
        return subprocess.Popen([sys.executable, WORKER, url, "chaos", str(out), VISIBILITY, "0.005"], stderr=err,
                                stdout=subprocess.DEVNULL)

    workers = [spawn() for _ in range(CONSUMERS)]
    kills = 0
    deadline = time.monotonic() + 120
    next_kill = time.monotonic() + 0.5
    try:
        while any(w.poll() is None for w in workers):
            assert time.monotonic() < deadline, f"the consumers did not drain the queue: {q.stats()}"
            if kills < MAX_KILLS and time.monotonic() >= next_kill:
                alive = [i for i, w in enumerate(workers) if w.poll() is None]
                victim = rng.choice(alive)
                os.kill(workers[victim].pid, signal.SIGKILL)
                workers[victim].wait()
                kills += 1
                workers[victim] = spawn()  # keep ten consumers
                next_kill += 0.5
            time.sleep(0.02)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()

    seen = [int(line) for log in logs if log.exists() for line in log.read_text().split()]
    assert set(seen) == set(range(MESSAGES)), f"lost: {sorted(set(range(MESSAGES)) - set(seen))[:20]}"
    assert len(seen) - MESSAGES <= kills, f"{len(seen) - MESSAGES} duplicates after {kills} kills"
    assert kills >= 3, "the drain ended before the chaos began: raise MESSAGES"
    errors = "".join(p.read_text(errors="replace") for p in tmp_path.glob("err-*.txt"))
    assert "database is locked" not in errors
    assert all(w.returncode == 0 for w in workers), errors[-2000:]
    assert q.stats().empty
