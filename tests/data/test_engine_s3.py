"""The Data Engine on an S3 artifact store (moto's server on 127.0.0.1, started here)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pandas as pd
import pytest

moto_server = pytest.importorskip("moto.server")

from keel.data.engine import DataEngine  # noqa: E402
from keel.store.s3 import S3Backend  # noqa: E402


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_home(keel_home, endpoint, monkeypatch):
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                 "KEEL_ARTIFACT_URL": "s3://keel-data/store"}.items():
        monkeypatch.setenv(k, v)
    S3Backend("keel-data").client.create_bucket(Bucket="keel-data")
    return keel_home


def test_tables_live_on_s3_and_read_back_through_a_local_cache(s3_home):
    engine = DataEngine.from_env()
    engine.save("weather", pd.DataFrame({"city": ["a", "b"], "t": [1.0, 2.0]}))
    engine.save("weather", pd.DataFrame({"city": ["c"], "t": [3.0]}), mode="append")
    paths = engine.paths("weather")
    assert len(paths) == 2 and all(p.startswith("s3://keel-data/store/") for p in paths)
    assert engine.load("weather")["city"].tolist() == ["a", "b", "c"]
    assert engine.sql("SELECT sum(t) AS s FROM weather")["s"][0] == 6.0
    assert all(str(s3_home / "cache" / "data") in p for p in engine.local_paths("weather"))
