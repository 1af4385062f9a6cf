"""Helpers shared by the test modules (import them with `from keel_testing import ...`).

They live here, not in conftest.py, because a sub-folder's own conftest.py would shadow a
module named `conftest`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FLOWS = Path(__file__).resolve().parent / "flows"
PYTHON = sys.executable


def load_flow(path: Path | str) -> type:
    """Import a flow file as a module and return its flow class."""
    from keel.flow.loader import load_flow_file

    return load_flow_file(str(path))


def run_in_process(path: Path | str, params: dict[str, Any] | None = None, **options: Any) -> Any:
    """Run a flow file through the real runtime from this process (tasks are forked)."""
    from keel.flow.parameters import defaults_or_given
    from keel.runtime.launch import RunRequest, start_run
    from keel.runtime.scheduler import Options

    flow_cls = load_flow(path)
    req = RunRequest(flow_cls=flow_cls, params=defaults_or_given(flow_cls, params or {}), flow_file=str(path),
                     options=Options(**options), quiet=True)
    return start_run(req)


def run_cli(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m keel.cli.main ARGS` (or `python FLOW.py ARGS` when args[0] ends in .py)."""
    cmd = [PYTHON, *args] if args and str(args[0]).endswith(".py") else [PYTHON, "-m", "keel.cli.main", *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def write_flow(folder: Path, name: str, source: str) -> Path:
    """Write a flow file from a dedented source string and return its path."""
    import textwrap

    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def module_of(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_expected_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- bad input (tests/badinput) --------------------------------------------------------------
def store_digest(home: Path) -> str:
    """A hash of the metadata database's rows (its SQL dump): equal before and after means nothing
    stored changed (the file's bytes may, when a reader checkpoints the WAL)."""
    import hashlib
    import sqlite3

    conn = sqlite3.connect(f"file:{home / 'metadata.db'}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def assert_clean_error(proc, code: int, *words: str) -> None:
    """One clear message, the exit status, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def edit_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as an editor saving it later would: a newer modification time,
    so Python's bytecode cache of a module (keyed by mtime and size) sees the edit even when the
    test rewrites it within the same second and with the same length."""
    before = path.stat().st_mtime if path.exists() else None
    path.write_text(text)
    if before is not None:
        later = max(path.stat().st_mtime, before + 2)
        os.utime(path, (later, later))
