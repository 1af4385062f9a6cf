"""ArtifactStore and its serializers, on real files and on the in-memory fake."""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from keel.errors import ArtifactCorrupted, ArtifactNotFound, StoreError
from keel.store import serializers
from keel.store.artifacts import ArtifactRef, ArtifactStore
from keel.store.backend import ByteBackend, LocalBackend, MemoryBackend
from keel.store.serializers import SerializationError

WHAT = "artifact 'm' of BigSum/3/start/1"


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> ByteBackend:
    if request.param == "local":
        return LocalBackend(tmp_path / "store")
    return MemoryBackend()


@pytest.fixture
def store(backend: ByteBackend) -> ArtifactStore:
    return ArtifactStore(backend)


def _blob_count(store: ArtifactStore) -> int:
    return len(list(store.backend.keys()))


def _temps(tmp_path: Path) -> list[str]:
    temp_dir = tmp_path / "store" / "tmp"
    return os.listdir(temp_dir) if temp_dir.exists() else []


# -- round trips ---------------------------------------------------------------

ARRAYS = {
    "float64": np.random.default_rng(0).random((50, 7)),
    "int8": np.arange(-100, 100, dtype=np.int8),
    "uint64-big-endian": np.arange(10, dtype=">u8"),
    "bool": np.array([True, False, True]),
    "complex": np.array([1 + 2j, 3 - 4j]),
    "datetime": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
    "unicode": np.array(["a", "keel", "ü"]),
    "structured": np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "i4"), ("b", "f8")]),
    "0-d": np.array(3.25),
    "empty": np.zeros((0, 3)),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "non-contiguous": np.arange(60).reshape(6, 10)[::2, 1::3],
    "big": np.random.default_rng(1).random(300_000),  # over the mmap threshold
}


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_numpy_round_trip(store: ArtifactStore, name: str) -> None:
    value = ARRAYS[name]
    ref = store.put(value)
    assert ref.serializer == "numpy"
    out = store.get(ref)
    assert type(out) is np.ndarray
    assert out.dtype == value.dtype and out.shape == value.shape
    np.testing.assert_array_equal(out, value)
    assert out.flags.writeable


def test_numpy_blob_is_a_standard_npy_file(tmp_path: Path) -> None:
    store = ArtifactStore(LocalBackend(tmp_path))
    value = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    ref = store.put(value)
    path = store.backend.local_path(ref.key)
    assert path is not None
    np.testing.assert_array_equal(np.load(path), value)


def test_big_array_is_memory_mapped_copy_on_write(tmp_path: Path) -> None:
    store = ArtifactStore(LocalBackend(tmp_path))
    value = np.arange(1_000_000, dtype=np.float64)
    ref = store.put(value)
    out = store.get(ref)
    assert out.base is not None  # a view on the mapping, not a fresh copy
    out[0] = -1.0  # the caller may mutate it...
    again = store.get(ref)  # ...without changing the stored blob
    assert again[0] == 0.0


def test_dataframe_round_trip(store: ArtifactStore) -> None:
    frame = pd.DataFrame(
        {
            "x": np.arange(5, dtype=np.int64),
            "y": np.linspace(0, 1, 5),
            "s": ["a", "b", None, "d", "e"],
            "c": pd.Categorical(["p", "q", "p", "q", "p"]),
            "t": pd.date_range("2024-01-01", periods=5, tz="UTC"),
        },
        index=pd.Index(list("vwxyz"), name="id"),
    )
    ref = store.put(frame)
    assert ref.serializer == "arrow-pandas"
    pd.testing.assert_frame_equal(store.get(ref), frame)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"lists": [[1, 2], [3]]}),
        pd.DataFrame({"mixed": [1, "a"]}),
        pd.DataFrame([[1, 2]], columns=["a", "a"]),
        pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)])),
    ],
    ids=["lists", "mixed", "duplicate-columns", "multiindex-columns"],
)
def test_dataframes_arrow_would_change_are_pickled(
    store: ArtifactStore, frame: pd.DataFrame
) -> None:
    ref = store.put(frame)
    assert ref.serializer.startswith("pickle")
    pd.testing.assert_frame_equal(store.get(ref), frame)


def test_arrow_table_round_trip(store: ArtifactStore) -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", None], "c": [[1], [], [2, 3]]})
    ref = store.put(table)
    assert ref.serializer == "arrow-table"
    assert store.get(ref).equals(table)


def test_dict_round_trip(store: ArtifactStore) -> None:
    value = {"alpha": 0.5, "layers": [64, 32], "name": "keel", "nested": {"t": (1, None)}}
    ref = store.put(value)
    assert ref.serializer == "pickle"
    assert store.get(ref) == value


def test_lambda_and_closure_use_cloudpickle(store: ArtifactStore) -> None:
    offset = 10

    def add(x: int) -> int:
        return x + offset

    ref = store.put({"f": lambda x: x * 2, "g": add})
    assert ref.serializer == "cloudpickle"
    out = store.get(ref)
    assert out["f"](4) == 8
    assert out["g"](1) == 11


def test_class_defined_in_main_is_loadable_in_another_process(tmp_path: Path) -> None:
    script = tmp_path / "flow.py"
    script.write_text(
        "import sys\n"
        "from keel.store.artifacts import ArtifactStore\n"
        "class Model:\n"
        "    def __init__(self): self.w = 3\n"
        "    def predict(self, x): return x * self.w\n"
        "ref = ArtifactStore.from_url(sys.argv[1]).put(Model())\n"
        "print(ref.key, ref.serializer, ref.size)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store")],
        capture_output=True, text=True, check=True,
    )
    key, name, size = result.stdout.split()
    assert name == "cloudpickle"
    model = ArtifactStore.from_url(tmp_path / "store").get(ArtifactRef(key, name, int(size)))
    assert model.predict(2) == 6


def test_big_compressible_pickle_is_compressed(store: ArtifactStore) -> None:
    value = {"rows": [{"id": i, "label": "same text again"} for i in range(20_000)]}
    raw = len(pickle.dumps(value, protocol=5))
    ref = store.put(value)
    assert ref.serializer == "pickle+zlib"
    assert ref.size < raw * 0.8
    assert store.get(ref) == value


def test_incompressible_bytes_are_not_compressed(store: ArtifactStore) -> None:
    small = os.urandom(100)
    big = os.urandom(2_000_000)
    for value in (small, big):
        ref = store.put(value)
        assert ref.serializer == "pickle"
        assert store.get(ref) == value


def test_unpicklable_value_raises_serialization_error(store: ArtifactStore) -> None:
    import threading

    with pytest.raises(SerializationError, match="cannot store a value of type .*lock"):
        store.put({"lock": threading.Lock()})
    assert _blob_count(store) == 0


def test_put_bytes_round_trip(store: ArtifactStore) -> None:
    key = store.put_bytes(b"print('hi')\n")
    assert store.get_bytes(key) == b"print('hi')\n"
    assert store.put_bytes(b"print('hi')\n") == key
    assert store.put_bytes(b"") != key
    assert store.get_bytes(store.put_bytes(b"")) == b""


def test_ref_to_dict_round_trip(store: ArtifactStore) -> None:
    ref = store.put([1, 2, 3])
    assert ArtifactRef.from_dict(ref.to_dict()) == ref
    assert set(ref.to_dict()) == {"key", "serializer", "size"}
    with pytest.raises(StoreError, match="not an artifact reference"):
        ArtifactRef.from_dict({"key": "abc"})


# -- content addressing ----------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: np.arange(1000.0), lambda: {"a": [1, 2, 3]}, lambda: pd.DataFrame({"a": [1, 2]})],
    ids=["numpy", "pickle", "arrow"],
)
def test_identical_values_are_stored_once(store: ArtifactStore, make, tmp_path: Path) -> None:
    first, second = store.put(make()), store.put(make())
    assert first == second
    assert _blob_count(store) == 1
    assert _temps(tmp_path) == []


def test_different_values_get_different_keys(store: ArtifactStore) -> None:
    assert store.put(np.arange(10)).key != store.put(np.arange(11)).key
    assert _blob_count(store) == 2


def test_key_is_the_hash_of_the_stored_bytes(tmp_path: Path) -> None:
    import xxhash

    store = ArtifactStore(LocalBackend(tmp_path))
    ref = store.put(np.arange(100))
    path = store.backend.local_path(ref.key)
    assert path is not None
    data = path.read_bytes()
    assert xxhash.xxh3_128_hexdigest(data) == ref.key
    assert len(data) == ref.size


# -- failures --------------------------------------------------------------------


def _corrupt(store: ArtifactStore, key: str) -> None:
    backend = store.backend
    path = backend.local_path(key)
    if path is None:
        assert isinstance(backend, MemoryBackend)
        data = bytearray(backend.read(key))
        data[-1] ^= 0xFF
        backend._replace(key, bytes(data))
    else:
        with open(path, "r+b") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
            f.seek(-1, os.SEEK_END)
            f.write(bytes([last[0] ^ 0xFF]))


@pytest.mark.parametrize(
    "value", [{"a": 1}, np.arange(10.0), np.arange(400_000.0)], ids=["pickle", "npy", "mmap"]
)
def test_flipped_byte_is_reported_as_corruption(store: ArtifactStore, value: object) -> None:
    ref = store.put(value)
    _corrupt(store, ref.key)
    with pytest.raises(ArtifactCorrupted) as info:
        store.get(ref, what=WHAT)
    message = str(info.value)
    assert message.startswith(f"{WHAT} is corrupted: the bytes on disk changed")
    assert ref.key in message
    assert store.backend.location(ref.key) in message


def test_truncated_blob_is_reported_as_corruption(tmp_path: Path) -> None:
    store = ArtifactStore(LocalBackend(tmp_path))
    ref = store.put(np.arange(100.0))
    path = store.backend.local_path(ref.key)
    assert path is not None
    os.truncate(path, 50)
    with pytest.raises(ArtifactCorrupted, match=f"{WHAT} is corrupted.*50 bytes long"):
        store.get(ref, what=WHAT)


def test_corrupted_raw_bytes(store: ArtifactStore) -> None:
    key = store.put_bytes(b"code snapshot")
    _corrupt(store, key)
    with pytest.raises(ArtifactCorrupted, match="code snapshot of BigSum/3 is corrupted"):
        store.get_bytes(key, what="code snapshot of BigSum/3")


def test_missing_blob_is_not_found(store: ArtifactStore) -> None:
    ref = store.put({"a": 1})
    store.backend.delete(ref.key)
    with pytest.raises(ArtifactNotFound) as info:
        store.get(ref, what=WHAT)
    assert str(info.value).startswith(f"{WHAT} not found: there is no blob {ref.key}")
    with pytest.raises(ArtifactNotFound, match="raw blob not found"):
        store.get_bytes(ref.key, what="raw blob")


def test_unknown_serializer_name(store: ArtifactStore) -> None:
    ref = store.put({"a": 1})
    with pytest.raises(SerializationError, match="unknown serializer 'msgpack'"):
        store.get(ArtifactRef(ref.key, "msgpack", ref.size))


def test_failure_while_writing_leaves_no_blob_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(LocalBackend(tmp_path / "store"))
    value = np.arange(3_000_000.0)  # written in several chunks
    written = []
    real_write = os.write

    def crash_midway(fd: int, data: bytes) -> int:
        if written:
            raise RuntimeError("killed in the middle of a write")
        written.append(len(data))
        return real_write(fd, data)

    # FileIO.write goes through C, so patch the sink's raw file instead.
    import keel.store.artifacts as artifacts

    class CrashingRaw:
        def __init__(self, raw):
            self.raw = raw

        def write(self, data):
            return crash_midway(self.raw.fileno(), data)

    real_init = artifacts._HashingWriter.__init__

    def init(self, raw, path):
        real_init(self, CrashingRaw(raw), path)

    monkeypatch.setattr(artifacts._HashingWriter, "__init__", init)
    with pytest.raises(RuntimeError, match="killed in the middle"):
        store.put(value)
    assert written  # something was written before the failure
    assert _blob_count(store) == 0
    assert _temps(tmp_path) == []


@pytest.mark.parametrize("value", [np.arange(1000.0), {"a": 1}], ids=["stream", "bytes"])
def test_disk_full_raises_store_error_with_path_and_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: object
) -> None:
    store = ArtifactStore(LocalBackend(tmp_path / "store"))
    import keel.store.artifacts as artifacts
    import keel.store.backend as backend_module

    def no_space(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(artifacts._HashingWriter, "write", no_space)  # a big value is streamed
    monkeypatch.setattr(backend_module, "_write_all", lambda fd, data: no_space(None, data))  # a small one written
    with pytest.raises(StoreError) as info:
        store.put(value)
    message = str(info.value)
    assert "cannot write artifact to " + str(tmp_path / "store" / "tmp") in message
    assert "No space left on device (ENOSPC)" in message
    assert _blob_count(store) == 0
    assert _temps(tmp_path) == []


def test_failed_publish_raises_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(LocalBackend(tmp_path / "store"))

    def denied(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "link", denied)
    with pytest.raises(StoreError, match=r"cannot store blob at .*Permission denied \(EACCES\)"):
        store.put(np.arange(10))
    assert _blob_count(store) == 0
    assert _temps(tmp_path) == []


# -- from_url ----------------------------------------------------------------------


def test_from_url_path_and_file_url(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a"), f"file://{tmp_path / 'a'}"):
        store = ArtifactStore.from_url(url)
        assert isinstance(store.backend, LocalBackend)
        assert store.backend.root == tmp_path / "a"


def test_from_url_s3_gives_the_s3_backend() -> None:
    # Opening the store makes no request; tests/store/test_s3.py runs it against a real server.
    store = ArtifactStore.from_url("s3://bucket/some/prefix/")
    assert type(store.backend).__name__ == "S3Backend"
    assert (store.backend.bucket, store.backend.prefix) == ("bucket", "some/prefix")
    with pytest.raises(StoreError, match="names no bucket"):
        ArtifactStore.from_url("s3://")


def test_from_url_unknown_scheme() -> None:
    with pytest.raises(StoreError, match="scheme 'gs' is unknown"):
        ArtifactStore.from_url("gs://bucket")


def test_importing_the_store_does_not_import_pandas_or_pyarrow(tmp_path: Path) -> None:
    code = (
        "import sys, keel.store.artifacts as a\n"
        "a.ArtifactStore.from_url(sys.argv[1]).put({'x': 1})\n"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip() == "[]"


def test_serializer_names_are_stable() -> None:
    names = {n for s in serializers.SERIALIZERS for n in s.names}
    assert names == {
        "numpy", "arrow-pandas", "arrow-table",
        "pickle", "pickle+zlib", "cloudpickle", "cloudpickle+zlib",
    }
