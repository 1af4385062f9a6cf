"""A project whose job with ``parallelism: 3`` consumes the queue a producer job filled."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keel.client.core import Run

KEEL = str(Path(sys.executable).with_name("keel"))

PROJECT = """\
name: feed
addons:
  queue: {visibility_timeout: 5, max_deliveries: 3}
jobs:
  - name: produce
    entrypoint: python produce.py
    addons: [queue]
  - name: consume
    entrypoint: python consume.py
    after: [produce]
    parallelism: 3
    addons: [queue]
"""

PRODUCE = """\
import sys
from keel import current
q = current.queue("work")
q.put_many(range(300))
if sys.argv[1:] == ["close"]:
    q.close()
"""

CONSUME = """\
import os
import sys
from keel import current
q = current.queue("work")
assert (q.settings.max_deliveries, q.settings.visibility_timeout) == (3, 5.0), q.settings
with open(f"seen-{os.environ['KEEL_INSTANCE']}.txt", "w") as out:
    for msg in (q.consume(until_closed=True) if sys.argv[1:] == ["close"] else q):
        out.write(f"{msg.body}\\n")
        msg.ack()
"""


@pytest.mark.parametrize("mode", ["close", "drained"])
def test_three_instances_drain_the_queue_a_producer_job_filled(mode: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``close``: the producer closes the queue and consumers wait for that; ``drained``: the
    consumers run after the producer succeeded, so a drained queue is the end."""
    home = tmp_path / "home"
    monkeypatch.setenv("KEEL_HOME", str(home))
    for var in ("KEEL_METADATA_URL", "KEEL_ARTIFACT_URL", "KEEL_QUEUE_URL"):
        monkeypatch.delenv(var, raising=False)
    project = tmp_path / "feed"
    project.mkdir()
    for name, text in (("keel.yaml", PROJECT), ("produce.py", PRODUCE), ("consume.py", CONSUME)):
        (project / name).write_text(textwrap.dedent(text).replace(".py\n", f".py {mode}\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_RUN_ID", "KEEL_STEP_NAME", "KEEL_TASK_ID"))}
    result = subprocess.run([KEEL, "project", "run"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr

    per_instance = [(project / f"seen-{i}.txt").read_text().split() for i in range(3)]
    seen = sorted(int(x) for lines in per_instance for x in lines)
    assert seen == list(range(300))                     # each message once: nobody died
    run = Run("feed/1")
    assert run.successful
    assert run.metrics["queue.lag_s"] and run.metrics["queue.depth"]

    listing = subprocess.run([KEEL, "queue", "list"], cwd=project, env=env, capture_output=True, text=True)
    assert listing.returncode == 0 and "work" in listing.stdout
    assert ("closed" in listing.stdout) == (mode == "close")
