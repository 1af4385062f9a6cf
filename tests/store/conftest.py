"""Store fixtures: a real PostgreSQL server for the session (Debian's, started on 127.0.0.1 at
a free port in a temp folder, stopped at the end) and a fresh database per test."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

_names = itertools.count(1)


def _pg_bin() -> Path | None:
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "initdb").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT`` of a server that lives for the test session."""
    pytest.importorskip("psycopg", reason="pip install 'keel[postgres]' (or make setup) for the PostgreSQL tests")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed; scripts/ci-setup.sh installs it (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="keel-pg-"))
    base.chmod(0o777)  # the postgres user must enter it
    data, log = base / "data", base / "server.log"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    try:
        subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                     "--no-sync", "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
        for attempt in range(4):   # the free port may be taken before the server binds it: another one
            port = _free_port()
            try:
                subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                                             "-t", "120", "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 "
                                                                f"-c fsync=off -c max_connections=200", "start"]),
                               check=True, capture_output=True, timeout=180)
                break
            except subprocess.CalledProcessError:
                text = log.read_text() if log.exists() else ""
                if "Address already in use" not in text or attempt == 3:
                    raise
    except subprocess.CalledProcessError as exc:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr!r}\n{text}") from exc
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60",
                                     "stop"]), capture_output=True, timeout=120)
        deadline = time.monotonic() + 30   # the server's last processes may still be leaving files
        while base.exists() and time.monotonic() < deadline:
            shutil.rmtree(base, ignore_errors=True)
            time.sleep(0.1)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's server."""
    import psycopg

    name = f"keel_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def md(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The metadata store on each backend: the in-memory fake, SQLite and PostgreSQL (contract tests)."""
    from keel.store.memory import MemoryMetadata
    from keel.store.metadata import MetadataStore

    if request.param == "memory":
        store: Any = MemoryMetadata()
    elif request.param == "sqlite":
        store = MetadataStore(f"sqlite:///{tmp_path / 'meta.db'}")
    else:
        store = MetadataStore(request.getfixturevalue("postgres_url"))
    yield store
    store.close()
