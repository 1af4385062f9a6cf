"""Storage faults, made for real: a full disk (a tiny tmpfs), permission denied (root without
CAP_DAC_OVERRIDE on a folder it does not own), bytes changed on disk, a task killed while it
writes. The task fails with a clear message, the store stays consistent, resume recovers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from reliability_kit import FLOWS, check_store, copy_flow, env_for, run, start, store_of, wait_for

from keel.client.core import Run
from keel.errors import ArtifactCorrupted

BIG = str(FLOWS / "big.py")


def _blobs(root: Path) -> set[str]:
    return {p.name for d in root.iterdir() if d.is_dir() and d.name != "tmp" for p in d.iterdir()}


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "artifacts"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_fails_the_task_clearly_and_keeps_the_store_consistent(tmp_path, tiny_disk):
    home = tmp_path / ".keel"
    env = env_for(home, KEEL_ARTIFACT_URL=str(tiny_disk))
    proc = run([BIG, "run", "--mb", "4", "--quiet"], env, tmp_path)
    assert proc.returncode == 1
    assert re.search(r"Run Big/1 failed at step 'fill' \(task 2\): StoreError: cannot store artifact 'blob' of "
                     r"Big/1/fill/2: cannot write artifact to \S+: No space left on device \(ENOSPC\)\n",
                     proc.stderr), proc.stderr
    assert "Fix it, then: python big.py resume 1" in proc.stderr
    store = store_of(home, tiny_disk)
    run1 = Run("Big/1", _store=store)
    assert run1.status == "failed" and run1["fill"].task.status == "failed"
    assert run1["fill"].task.artifacts == {}                     # nothing recorded for the failed task
    assert list((tiny_disk / "tmp").iterdir()) == []            # the partial write was removed
    check_store(home, tiny_disk)                                 # every blob whole, every artifact loads

    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)   # space freed
    again = run([BIG, "resume", "--quiet"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert Run("Big/2", _store=store).data.size == 4 << 20
    check_store(home, tiny_disk)


def test_permission_denied_fails_the_task_clearly(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to take CAP_DAC_OVERRIDE away")
    home = tmp_path / ".keel"
    env = env_for(home)
    assert run([BIG, "run", "--mb", "1", "--quiet"], env, tmp_path).returncode == 0
    root = home / "artifacts"
    before = _blobs(root)
    os.chown(root, 65534, -1)          # the folder now belongs to nobody; root may no longer write
    os.chmod(root, 0o755)              # into it once CAP_DAC_OVERRIDE is gone (tmp/ is still ours)
    try:
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", os.sys.executable, BIG,
               "run", "--mb", "1", "--quiet"]
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        os.chown(root, 0, -1)
    assert proc.returncode == 1
    assert re.search(r"StoreError: cannot store artifact 'blob' of Big/2/fill/2: cannot store blob at \S+: "
                     r"Permission denied \(EACCES\)\n", proc.stderr), proc.stderr
    assert _blobs(root) == before and list((root / "tmp").iterdir()) == []
    store = store_of(home)
    assert Run("Big/2", _store=store)["fill"].task.status == "failed"
    check_store(home)


def test_changed_bytes_are_detected_with_the_artifact_and_the_run_named(tmp_path):
    home = tmp_path / ".keel"
    env = env_for(home)
    flow = copy_flow(tmp_path)
    assert run([str(flow), "run", "--n", "2", "--quiet"], env, tmp_path).returncode == 0
    store = store_of(home)
    task = Run("Counted/1", _store=store)["work"].tasks[1]
    key = task.artifacts["arr"].key
    blob = home / "artifacts" / key[:2] / key
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF                                             # one bit flipped on disk
    blob.write_bytes(bytes(data))

    with pytest.raises(ArtifactCorrupted) as caught:
        Run("Counted/1", _store=store)["work"].tasks[1].data.arr
    assert str(caught.value).startswith(f"artifact 'arr' of {task.pathspec} is corrupted: the bytes on disk "
                                        f"changed after it was stored (blob {key} at {blob}: its content hash "
                                        f"is now ")

    # a task that reads it fails, naming it, instead of computing with bad data
    proc = run([str(flow), "resume", "1", "join", "--quiet"], env, tmp_path)
    assert proc.returncode == 1
    assert re.search(r"ArtifactCorrupted: artifact 'arr' read by input work of Counted/2/join/\d+ is corrupted",
                     proc.stderr), proc.stderr


def test_a_task_killed_while_writing_leaves_no_partial_artifact(tmp_path):
    home = tmp_path / ".keel"
    env = env_for(home)
    temp = home / "artifacts" / "tmp"
    proc = start([BIG, "run", "--mb", "300", "--quiet"], env, tmp_path)
    try:
        def writing() -> list[Path]:
            try:
                return [p for p in temp.iterdir() if p.stat().st_size > (1 << 20)]
            except FileNotFoundError:
                return []

        partial = wait_for(writing, 60, "the fill task to be writing its 300 MB artifact", every=0.002)[0]
        os.kill(int(partial.name.split("-")[0]), signal.SIGKILL)  # temp files are named PID-UUID
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    store = store_of(home)
    task = Run("Big/1", _store=store)["fill"].task
    assert task.status == "failed" and task.artifacts == {}
    assert task.exception["message"].startswith("the task process was killed by SIGKILL")
    assert check_store(home)["blobs"] >= 1                      # no blob is partial: each matches its hash
