"""Helpers of the reliability suite: real flow processes, execution counts, store checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

FLOWS = Path(__file__).resolve().parent / "flows"
PYTHON = sys.executable


def copy_flow(folder: Path, name: str = "counted", bug: str = "") -> Path:
    """A copy of a flow file in ``folder``, with its BUG line set (the code of a run)."""
    path = folder / f"{name}.py"
    text = (FLOWS / f"{name}.py").read_text()
    path.write_text(text.replace('\nBUG = ""\n', f"\nBUG = {bug!r}\n", 1))
    return path


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(KEEL_HOME=str(home), KEEL_TEST_MARKS=str(home.parent / "marks.log"), **extra)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, *args] if str(args[0]).endswith(".py") else
                          [PYTHON, "-m", "keel.cli.main", *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def marks(home: Path) -> list[tuple[str, str, int, str]]:
    """Every task execution so far: (step, index, pid, extra)."""
    path = home.parent / "marks.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        step, index, pid, *extra = line.split(" ")
        out.append((step, index, int(pid), " ".join(extra).strip()))
    return out


def counts(home: Path) -> Counter:
    return Counter((s, i) for s, i, _, _ in marks(home))


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll ``condition`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def store_of(home: Path, artifacts_root: Path | None = None) -> Any:
    from keel.store import Store, StoreSettings

    return Store(StoreSettings(home=home, metadata_url=f"sqlite:///{home / 'metadata.db'}",
                               artifact_url=str(artifacts_root or home / "artifacts")))


def check_store(home: Path, artifacts_root: Path | None = None) -> dict[str, int]:
    """The store's invariants: every blob's bytes match its name (no half-written artifact is
    visible), and every artifact of every finished task loads. Returns what was checked."""
    import xxhash

    from keel.client.core import Run

    root = artifacts_root or home / "artifacts"
    blobs = 0
    for sub in root.iterdir() if root.exists() else ():
        if sub.name == "tmp" or not sub.is_dir():
            continue
        for blob in sub.iterdir():
            assert xxhash.xxh3_128_hexdigest(blob.read_bytes()) == blob.name, f"blob {blob} does not match its name"
            blobs += 1
    store = store_of(home, artifacts_root)
    loaded = 0
    for record in store.metadata.runs.list_runs():
        run = Run(_record=record, _store=store)
        for task_record in store.metadata.runs.list_tasks(record.flow, record.run_id):
            if task_record.status not in ("succeeded", "reused", "caught"):
                continue
            for name, info in store.metadata.runs.task_artifacts(record.flow, record.run_id, task_record.task_id).items():
                from keel.store.artifacts import ArtifactRef

                store.artifacts.get(ArtifactRef(info["key"], info["serializer"], info["size"]),
                                    what=f"artifact {name!r} of {run.pathspec}")
                loaded += 1
    store.metadata.close()
    return {"blobs": blobs, "artifacts": loaded}


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
