"""Fixtures of the executor tests: a real two-node Ray cluster (executors_kit.RayCluster) and an
S3-compatible server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from executors_kit import RayCluster, free_port


@pytest.fixture(scope="module")  # gone before other modules run: they check that no child process is left
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    pytest.importorskip("ray")
    cluster = RayCluster(tmp_path_factory.mktemp("ray-cluster"))
    try:
        cluster.start_head()
        cluster.wait_for_nodes({"head"})
        cluster.start_worker()
        cluster.wait_for_nodes({"head", "worker"})
        yield cluster
    finally:
        cluster.stop("worker")
        cluster.stop("head")
        shutil.rmtree(cluster.ray_temp, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1, in this process, for the whole session."""
    pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
