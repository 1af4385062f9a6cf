"""The S3 backend against a real S3-compatible server (moto's) on 127.0.0.1, started here."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from keel.errors import ArtifactCorrupted, ArtifactNotFound, StoreError  # noqa: E402
from keel.store.artifacts import ArtifactStore  # noqa: E402
from keel.store.s3 import S3Backend  # noqa: E402

_MB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask a metadata service
    return endpoint


@pytest.fixture
def bucket(aws: str, request: pytest.FixtureRequest) -> str:
    name = "keel-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    S3Backend(name).client.create_bucket(Bucket=name)
    return name


def test_values_round_trip_and_identical_values_are_stored_once(bucket: str) -> None:
    store = ArtifactStore.from_url(f"s3://{bucket}/runs/a")
    ref = store.put({"alpha": 0.5, "items": [1, 2, 3]})
    again = store.put({"alpha": 0.5, "items": [1, 2, 3]})
    assert again == ref
    assert store.get(ref) == {"alpha": 0.5, "items": [1, 2, 3]}
    assert list(store.backend.keys()) == [ref.key]
    listed = store.backend.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"runs/a/{ref.key}"]
    assert store.backend.location(ref.key) == f"s3://{bucket}/runs/a/{ref.key}"


def test_large_blobs_go_up_and_down_in_parallel_parts(bucket: str) -> None:
    backend = S3Backend(bucket, "big", multipart_threshold=5 * _MB, part_size=5 * _MB, concurrency=4)
    store = ArtifactStore(backend)
    array = np.random.default_rng(0).random(12 * _MB // 8 + 1000)       # ~12 MB: three parts
    ref = store.put(array)
    head = backend.client.head_object(Bucket=bucket, Key=f"big/{ref.key}")
    assert head["ETag"].strip('"').endswith("-3")                         # a multipart upload's ETag
    assert np.array_equal(store.get(ref), array)


def test_a_changed_object_is_reported_not_loaded(bucket: str) -> None:
    store = ArtifactStore.from_url(f"s3://{bucket}/p")
    ref = store.put(list(range(100)))
    store.backend.client.put_object(Bucket=bucket, Key=f"p/{ref.key}", Body=b"tampered")
    with pytest.raises(ArtifactCorrupted, match=f"is corrupted: .*blob {ref.key} at s3://{bucket}/p/{ref.key}"):
        store.get(ref, what="artifact 'x' of F/1/start/1")


def test_a_missing_blob_says_where_it_was_looked_for(bucket: str) -> None:
    store = ArtifactStore.from_url(f"s3://{bucket}/p")
    with pytest.raises(ArtifactNotFound, match=f"there is no blob 00000000000000000000000000000000 at "
                                               f"s3://{bucket}/p/00000000000000000000000000000000"):
        store.get_bytes("00000000000000000000000000000000", what="artifact 'x'")


def test_an_object_is_visible_only_once_complete(bucket: str) -> None:
    backend = S3Backend(bucket, "atomic", multipart_threshold=5 * _MB, part_size=5 * _MB, concurrency=2)
    store = ArtifactStore(backend)
    data = os.urandom(16 * _MB)
    done = threading.Event()
    box: dict[str, str] = {}

    def upload() -> None:
        box["key"] = store.put_bytes(data)
        done.set()

    import xxhash

    key = xxhash.xxh3_128_hexdigest(data)
    thread = threading.Thread(target=upload)
    thread.start()
    seen_partial = []
    while not done.is_set():
        if backend.exists(key):
            seen_partial.append(backend.size(key))
    thread.join()
    assert box["key"] == key
    assert all(size == len(data) for size in seen_partial)      # never a partial object
    assert backend.read(key)[:] == data


def test_a_missing_bucket_is_one_clear_error(aws: str) -> None:
    store = ArtifactStore.from_url("s3://no-such-bucket-here/p")
    with pytest.raises(StoreError, match=r"^S3 bucket 'no-such-bucket-here' does not exist \(artifact store "
                                         r"s3://no-such-bucket-here/p\); create it or fix KEEL_ARTIFACT_URL$"):
        store.put({"a": 1})


def test_no_credentials_is_one_clear_error(aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store = ArtifactStore.from_url("s3://any-bucket/p")
    with pytest.raises(StoreError, match=r"^no AWS credentials for s3://any-bucket/p/[0-9a-f]+: set "
                                         r"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \(or AWS_PROFILE\)$"):
        store.put({"a": 1})


def test_the_backend_travels_to_other_processes_without_its_client(bucket: str) -> None:
    import pickle

    backend = S3Backend(bucket, "p")
    backend.client  # noqa: B018 - opened here
    copy = pickle.loads(pickle.dumps(backend))
    assert copy._client is None and (copy.bucket, copy.prefix) == (bucket, "p")
    store = ArtifactStore(copy)
    assert store.get(store.put("hello")) == "hello"
