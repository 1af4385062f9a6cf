"""Code snapshots (imports followed, .gitignore honoured, size cap) and ``keel reproduce``."""

from __future__ import annotations

import json
import subprocess

from keel_testing import run_cli, run_in_process, write_flow
from keel import Flow, Run
from keel.store import Store
from keel.tracking.snapshot import load_manifest, local_imports

FLOW = '''
    import random
    from keel import FlowSpec, IncludeFile, Parameter, step
    from lib.model import score
    import helpers

    class Repro(FlowSpec):
        alpha = Parameter("alpha", default=0.1)
        data = IncludeFile("data", default="data.csv")

        @step
        def start(self):
            self.acc = score(self.alpha) * helpers.SCALE
            self.rows = len(self.data.splitlines())
            self.noise = random.random()
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def make_project(folder):
    (folder / "lib").mkdir()
    (folder / "lib" / "__init__.py").write_text("")
    (folder / "lib" / "model.py").write_text("from . import consts\n\ndef score(a):\n    return a * consts.K\n")
    (folder / "lib" / "consts.py").write_text("K = 3\n")
    (folder / "helpers.py").write_text("SCALE = 2\n")
    (folder / "unused.py").write_text("X = 1\n")
    (folder / "data.csv").write_text("a,b\n1,2\n3,4\n")
    return write_flow(folder, "repro", FLOW)


def test_snapshot_follows_imports_and_honours_gitignore(keel_home, tmp_path):
    path = make_project(tmp_path)
    assert sorted(local_imports(str(path))) == ["helpers.py", "lib/__init__.py", "lib/consts.py", "lib/model.py",
                                                "repro.py"]
    (tmp_path / ".gitignore").write_text("helpers.py\n.keel/\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(git + ["add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], cwd=tmp_path, check=True)
    (tmp_path / "unused.py").write_text("X = 2\n")  # an uncommitted change
    assert run_in_process(path, {"alpha": 0.5}).status == "succeeded"
    run = Flow("Repro").latest_run
    snap = run.environment["snapshot"]
    manifest = load_manifest(Store.from_env(), snap["key"])
    assert sorted(manifest["files"]) == ["lib/__init__.py", "lib/consts.py", "lib/model.py", "repro.py"]
    assert manifest["ignored"] == ["helpers.py"] and snap["files"] == 4
    assert len(run.environment["git_commit"]) == 40 and run.environment["git_dirty"] is True


def test_snapshot_size_cap(keel_home, tmp_path, monkeypatch):
    path = make_project(tmp_path)
    (tmp_path / "helpers.py").write_text("SCALE = 2\nBLOB = '" + "x" * 300_000 + "'\n")
    monkeypatch.setenv("KEEL_SNAPSHOT_MAX_MB", "0.1")
    proc = run_cli("run", str(path))
    assert proc.returncode == 0, proc.stderr
    assert ("Warning: the code snapshot of repro.py would be 0.3 MB (5 files), over the 0.1 MB cap: keeping only "
            "repro.py. Raise the cap with KEEL_SNAPSHOT_MAX_MB=1") in proc.stdout + proc.stderr
    snap = Flow("Repro").latest_run.environment["snapshot"]
    assert snap["files"] == 1 and snap["truncated"] is True


def test_reproduce_reports_identical_and_different_artifacts(keel_home, tmp_path):
    path = make_project(tmp_path)
    assert run_in_process(path, {"alpha": 0.5}).status == "succeeded"
    # The originals change after the run: the reproduction must use the snapshot and the stored data.
    (tmp_path / "lib" / "consts.py").write_text("K = 1000\n")
    (tmp_path / "data.csv").write_text("changed\n")
    proc = run_cli("reproduce", "Repro/1", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["original"] == "Repro/1" and report["reproduction"] == "Repro/2"
    assert report["status"] == "succeeded"
    assert report["identical"] == ["start.acc", "start.rows"]
    assert report["different"] == ["start.noise"]
    # Same interpreter; the package list may differ only by what this test process put on sys.path
    # (Ray, once imported by another test, adds its bundled packages), so only Python is pinned.
    assert not [e for e in report["environment"] if e.startswith("python ")]
    new = Run("Repro/2")
    assert new.params == {"alpha": 0.5, "data": "a,b\n1,2\n3,4\n"}
    assert new["start"].task.data.acc == 0.5 * 3 * 2
    assert new.tags == ["reproduces:Repro/1"]
    proc = run_cli("reproduce", "Repro/1", "-q", cwd=tmp_path)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[:3] == [
        "Repro/1 -> Repro/3 (succeeded), from its code snapshot (5 files)",
        "identical (2): start.acc, start.rows",
        "different (1): start.noise",
    ]
    assert lines[3] == "environment: same Python and packages" or lines[3].startswith("environment changed: ")
    assert len(lines) == 4
    proc = run_cli("reproduce", "Repro/7")
    assert proc.returncode == 2 and proc.stderr.strip().endswith("no run Repro/7; list the runs with: keel runs Repro")


def test_environment_changes_in_words():
    from keel.tracking.reproduce import environment_changes

    before = {"python": "3.11.7", "packages": {"numpy": "1.26.4", "gone": "1.0"}}
    after = {"python": "3.12.1", "packages": {"numpy": "2.0.0", "Added": "0.1"}}
    assert environment_changes(before, after) == ["python 3.11.7 -> 3.12.1", "Added (absent) -> 0.1",
                                                  "gone 1.0 -> (absent)", "numpy 1.26.4 -> 2.0.0"]
    assert environment_changes(before, before) == []
