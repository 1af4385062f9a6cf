"""A store the user cannot write (shared, archived) can be browsed: runs, show, logs, the client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from keel_testing import run_cli, write_flow

FLOW = """
from keel import FlowSpec, step

class Archived(FlowSpec):
    @step
    def start(self):
        self.x = 41
        print("kept in the archive")
        self.next(self.end)

    @step
    def end(self):
        self.y = self.x + 1

if __name__ == "__main__":
    Archived()
"""

def _nobody_can_run_python() -> bool:
    if os.geteuid() != 0 or not shutil.which("runuser"):
        return False
    done = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", "import keel"],
                          capture_output=True, cwd="/tmp")
    return done.returncode == 0


NOBODY = pytest.mark.skipif(not _nobody_can_run_python(),
                            reason="reads the store as the user nobody (needs root, runuser and a Python nobody can run)")


@pytest.fixture
def archived_store(tmp_path, keel_home):
    flow = write_flow(tmp_path, "archived", FLOW)
    assert run_cli(str(flow), "run", cwd=tmp_path).returncode == 0
    folder = Path(tempfile.mkdtemp(prefix="keel-ro-"))
    try:
        home = folder / "store"
        shutil.copytree(keel_home, home)
        os.chmod(folder, 0o755)
        subprocess.run(["chmod", "-R", "a-w,a+rX", str(home)], check=True)
        yield home
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
        shutil.rmtree(folder)


def _as_nobody(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "KEEL_HOME": str(home), "HOME": "/tmp"}
    return subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, *args], cwd="/tmp", env=env,
                          capture_output=True, text=True, timeout=120)


def _forced(home: Path, *args: str) -> subprocess.CompletedProcess:
    """This user (root can write anything) with KEEL_READ_ONLY=1: the same read-only opening."""
    env = {**os.environ, "KEEL_HOME": str(home), "KEEL_READ_ONLY": "1"}
    return subprocess.run([sys.executable, *args], cwd="/tmp", env=env, capture_output=True, text=True, timeout=120)


def _snapshot(home: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}


def test_keel_read_only_browses_and_changes_nothing(archived_store):
    before = _snapshot(archived_store)
    for args, expect in ((("runs",), "Archived/1"), (("show", "Archived/1"), "succeeded"),
                         (("logs", "Archived/1/start"), "kept in the archive")):
        done = _forced(archived_store, "-m", "keel.cli.main", *args)
        assert done.returncode == 0 and expect in done.stdout, (args, done.stderr)
    client = _forced(archived_store, "-c", "from keel import Run; r = Run('Archived/1'); print(r.data.y, r.successful)")
    assert client.stdout.split() == ["42", "True"], client.stderr
    tag = _forced(archived_store, "-m", "keel.cli.main", "tag", "Archived/1", "mine")
    assert tag.returncode == 1 and "read-only" in tag.stderr and "Traceback" not in tag.stderr
    assert _snapshot(archived_store) == before


@NOBODY
def test_runs_show_and_logs_work_on_a_read_only_store(archived_store):
    for args, expect in ((("runs",), "Archived/1"), (("show", "Archived/1"), "succeeded"),
                         (("logs", "Archived/1/start"), "kept in the archive")):
        done = _as_nobody(archived_store, "-m", "keel.cli.main", *args)
        assert done.returncode == 0, (args, done.stderr)
        assert expect in done.stdout and "Traceback" not in done.stderr


@NOBODY
def test_the_client_reads_a_read_only_store(archived_store):
    done = _as_nobody(archived_store, "-c", "from keel import Run; r = Run('Archived/1'); print(r.data.y, r.successful)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["42", "True"]


@NOBODY
def test_a_write_to_a_read_only_store_says_so(archived_store):
    done = _as_nobody(archived_store, "-m", "keel.cli.main", "tag", "Archived/1", "mine")
    assert done.returncode == 1 and "read-only" in done.stderr and "Traceback" not in done.stderr
