"""Fixtures of the Data Engine tests: a real PostgreSQL on 127.0.0.1 for ``export``, and one
Spark standalone cluster (a master and a one-core 512 MB worker from pyspark's jars) with a
SparkSession on it, started once for the whole session and shared by every data test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def spark_cluster() -> Iterator[object]:
    pytest.importorskip("pyspark")
    from keel.addons.spark import SparkCluster, SparkSettings

    with SparkCluster(SparkSettings(workers=1, worker_cores=1, worker_memory="512m")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def spark(spark_cluster: object) -> Iterator[object]:
    """A SparkSession on the shared cluster (``KEEL_SPARK_MASTER`` points at it meanwhile)."""
    from keel.addons.spark import SparkCluster, session, stop_session

    assert isinstance(spark_cluster, SparkCluster)
    saved = dict(os.environ)
    os.environ.update(spark_cluster.environment())
    try:
        yield session("keel-tests")
    finally:
        stop_session()
        os.environ.clear()
        os.environ.update(saved)


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*args: str) -> list[str]:
    return (["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server (initdb + pg_ctl on a free port); its SQLAlchemy URL."""
    pytest.importorskip("psycopg")
    initdb = shutil.which("initdb") or str(_pg_bin() / "initdb")
    pg_ctl = shutil.which("pg_ctl") or str(_pg_bin() / "pg_ctl")
    if not os.path.exists(initdb):
        pytest.skip("PostgreSQL is not installed (scripts/ci-setup.sh installs it)")
    root = tempfile.mkdtemp(prefix="keel-pg-")
    os.chmod(root, 0o777)
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run(_as_postgres(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres(pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60",
                                "-o", f"-h 127.0.0.1 -p {port} -k {root}", "start"),
                   check=True, capture_output=True)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        import sqlalchemy as sa

        deadline = time.monotonic() + 120  # generous: a loaded machine is slow to start processes
        while True:
            try:
                engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
                with engine.connect():
                    pass
                engine.dispose()
                break
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        subprocess.run(_as_postgres(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
