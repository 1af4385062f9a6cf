"""keel.runtime.reaper: a task with no children leaves without looking for descendants."""

from __future__ import annotations

import os
import subprocess

from keel.runtime import reaper


def test_a_thread_that_ended_while_listed_is_not_taken_for_a_child(monkeypatch):
    # /proc/self/task listed a thread that ended before its children file was read (the
    # metrics sampler, stopped just before): no child, so no descendant search (psutil).
    real = os.listdir
    monkeypatch.setattr(reaper.os, "listdir",
                        lambda path: real(path) + ["999999999"] if path == "/proc/self/task" else real(path))
    assert reaper._has_children() is False


def test_a_child_is_seen():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert reaper._has_children() is True
    finally:
        child.kill()
        child.wait()
