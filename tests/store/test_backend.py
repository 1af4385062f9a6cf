"""The byte backends: LocalBackend on real files, MemoryBackend as its fake."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from keel.errors import ArtifactNotFound, StoreError
from keel.store.backend import ByteBackend, LocalBackend, MemoryBackend

KEY = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


@pytest.fixture(params=["local", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> ByteBackend:
    if request.param == "local":
        return LocalBackend(tmp_path / "store")
    return MemoryBackend()


def _fill(backend: ByteBackend, data: bytes) -> Path:
    temp = backend.new_temp()
    temp.write_bytes(data)
    return temp


def test_both_backends_satisfy_the_protocol(backend: ByteBackend) -> None:
    assert isinstance(backend, ByteBackend)


def test_commit_then_read_back(backend: ByteBackend) -> None:
    temp = _fill(backend, b"hello")
    assert backend.commit(temp, KEY) is True
    assert not temp.exists()
    assert backend.exists(KEY)
    assert backend.read(KEY) == b"hello"
    with backend.open(KEY) as f:
        assert f.read() == b"hello"
    assert backend.size(KEY) == 5
    assert list(backend.keys()) == [KEY]


def test_commit_of_an_existing_key_keeps_the_first_blob(backend: ByteBackend) -> None:
    assert backend.commit(_fill(backend, b"first"), KEY) is True
    temp = _fill(backend, b"second")
    assert backend.commit(temp, KEY) is False
    assert not temp.exists()
    assert backend.read(KEY) == b"first"


def test_write_is_atomic_and_deduplicates(backend: ByteBackend) -> None:
    assert backend.write(KEY, b"data") is True
    assert backend.write(KEY, b"data") is False
    assert backend.read(KEY) == b"data"


def test_missing_blob(backend: ByteBackend) -> None:
    assert not backend.exists(KEY)
    for op in (backend.read, backend.open, backend.size):
        with pytest.raises(ArtifactNotFound, match=KEY):
            op(KEY)


def test_delete(backend: ByteBackend) -> None:
    backend.write(KEY, b"x")
    backend.write(OTHER, b"y")
    backend.delete(KEY)
    backend.delete(KEY)  # deleting twice is fine
    assert not backend.exists(KEY)
    assert list(backend.keys()) == [OTHER]


@pytest.mark.parametrize("key", ["../etc", "a/b", "", "ab", "x.y", "..", "a" * 201])
def test_keys_cannot_escape_the_store(backend: ByteBackend, key: str) -> None:
    with pytest.raises(StoreError, match="invalid blob key"):
        backend.exists(key)


def test_local_layout_and_local_path(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.write(KEY, b"abc")
    path = tmp_path / KEY[:2] / KEY
    assert path.read_bytes() == b"abc"
    assert backend.local_path(KEY) == path
    assert backend.location(KEY) == str(path)
    assert os.listdir(tmp_path / "tmp") == []


def test_memory_backend_has_no_local_path() -> None:
    backend = MemoryBackend()
    backend.write(KEY, b"abc")
    assert backend.local_path(KEY) is None
    assert backend.location(KEY) == f"memory:{KEY}"


def test_temp_files_are_unique_and_inside_the_root(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    a, b = backend.new_temp(), backend.new_temp()
    assert a != b
    assert a.parent == b.parent == tmp_path / "tmp"


def test_commit_failure_raises_store_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(tmp_path)
    temp = _fill(backend, b"data")

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", no_space)
    with pytest.raises(StoreError) as info:
        backend.commit(temp, KEY)
    message = str(info.value)
    assert str(tmp_path / KEY[:2] / KEY) in message
    assert "No space left on device" in message
    assert not temp.exists()
    assert not backend.exists(KEY)


def test_commit_falls_back_to_replace_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(tmp_path)

    def unsupported(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", unsupported)
    assert backend.commit(_fill(backend, b"one"), KEY) is True
    assert backend.commit(_fill(backend, b"two"), KEY) is False
    assert backend.read(KEY) == b"one"
    assert os.listdir(tmp_path / "tmp") == []


def test_new_temp_failure_names_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    backend = LocalBackend(blocker)
    with pytest.raises(StoreError, match="cannot create a temp file in .*file/tmp"):
        backend.new_temp()


def test_fsync_mode_stores_the_same_way(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, fsync=True)
    assert backend.commit(_fill(backend, b"durable"), KEY) is True
    assert backend.read(KEY) == b"durable"
