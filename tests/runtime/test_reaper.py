"""keel.runtime.reaper: a task with no children leaves without looking for descendants."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from keel.runtime import reaper


def test_a_thread_that_ended_while_listed_is_not_taken_for_a_child():
    # /proc/self/task listed a thread that ended before its children file was read (the
    # metrics sampler, stopped just before): no child, so no descendant search (psutil).
    # In a fresh process: the test runner's own may have children (servers of other tests).
    script = textwrap.dedent("""
        import os
        from keel.runtime import reaper
        real = os.listdir
        reaper.os.listdir = lambda path: real(path) + ["999999999"] if path == "/proc/self/task" else real(path)
        print(reaper._has_children())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_child_is_seen():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert reaper._has_children() is True
    finally:
        child.kill()
        child.wait()
