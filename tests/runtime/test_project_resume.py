"""`keel project resume` / `keel resume PROJECT/RUN`: only the failed and unfinished jobs run again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.client.core import Run

KEEL = str(Path(sys.executable).with_name("keel"))

PROJECT = """name: flaky
jobs:
  - name: first
    entrypoint: echo first >> ran.txt
  - name: wide
    entrypoint: test -f fixed || test $KEEL_INSTANCE = 0 || exit 3; echo wide$KEEL_INSTANCE >> ran.txt
    parallelism: 3
    after: [first]
  - name: third
    entrypoint: echo third >> ran.txt
    after: [wide]
  - name: side
    entrypoint: echo side >> ran.txt
"""


def keel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_RUN", "KEEL_STEP", "KEEL_TASK"))}
    return subprocess.run([KEEL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def ran(folder: Path) -> list[str]:
    path = folder / "ran.txt"
    text = path.read_text() if path.exists() else ""
    path.write_text("")
    return sorted(text.split())


@pytest.fixture
def failed_once(tmp_path: Path, keel_home: Path) -> Path:
    """flaky/1: first and side succeeded, instance 0 of wide succeeded, 1 and 2 failed, third skipped."""
    (tmp_path / "keel.yaml").write_text(PROJECT)
    done = keel("project", "run", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Fix it, then: keel project resume -f keel.yaml 1" in done.stderr
    assert ran(tmp_path) == ["first", "side", "wide0"]
    return tmp_path


def test_a_resume_runs_only_what_failed_or_did_not_run(failed_once: Path) -> None:
    (failed_once / "fixed").write_text("")
    done = keel("project", "resume", cwd=failed_once)
    assert done.returncode == 0, done.stderr
    assert ran(failed_once) == ["third", "wide1", "wide2"]
    run = Run("flaky/2")
    assert run.successful
    assert [t.reused for t in run["wide"]] == [True, False, False]
    assert run["first"].task.reused and run["first"].task.origin == "flaky/1/first/1"
    assert run["side"].task.reused and not run["third"].task.reused


def test_a_resume_that_fails_again_is_resumed_from_the_first_run(failed_once: Path) -> None:
    assert keel("project", "resume", "1", cwd=failed_once).returncode == 1   # not fixed yet
    assert ran(failed_once) == []  # only wide 1 and 2 ran again, and failed before writing
    (failed_once / "fixed").write_text("")
    done = keel("resume", "flaky/2", cwd=failed_once)                        # the same, from the run's pathspec
    assert done.returncode == 0, done.stderr
    assert ran(failed_once) == ["third", "wide1", "wide2"]
    assert Run("flaky/3")["first"].task.origin == "flaky/1/first/1"        # taken from where it ran


def test_a_succeeded_run_has_nothing_to_resume(failed_once: Path) -> None:
    (failed_once / "fixed").write_text("")
    assert keel("project", "resume", cwd=failed_once).returncode == 0
    done = keel("project", "resume", cwd=failed_once)
    assert done.returncode == 2 and "nothing to resume" in done.stderr and "Traceback" not in done.stderr
    done = keel("project", "resume", "7", cwd=failed_once)
    assert done.returncode == 2 and "no project run flaky/7" in done.stderr and "Traceback" not in done.stderr
