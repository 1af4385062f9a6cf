"""Content-addressed artifacts: values in, :class:`ArtifactRef` out, and back.

Every value is serialized (:mod:`keel.store.serializers`), hashed with XXH3-128 while
it is written, and kept as one blob named by that hash in a :class:`ByteBackend`.
Identical values therefore cost one blob however often they are stored, and every
read checks the bytes against their name, so a blob changed on disk is reported, not
silently loaded.

    >>> store = ArtifactStore.from_url(".keel/artifacts")
    >>> ref = store.put({"alpha": 0.5})
    >>> store.get(ref, what="artifact 'params' of Train/3/start/1")
    {'alpha': 0.5}
"""

from __future__ import annotations

import mmap
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from keel.errors import ArtifactCorrupted, ArtifactNotFound, StoreError
from keel.store import serializers
from keel.store.backend import ByteBackend, LocalBackend, _os_reason, _unlink_quietly

__all__ = ["ArtifactRef", "ArtifactStore"]

_MMAP_FROM = 1 << 20  # smaller local blobs are read into memory; larger ones mapped
_CHUNK = 4 << 20  # hash and write big buffers in pieces that stay in the CPU cache


def _digest(data: Any) -> str:
    return xxhash.xxh3_128_hexdigest(data)


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """Where a stored value is and how to read it; small enough for the metadata DB."""

    key: str
    """Content hash (hex) of the stored bytes; also the blob's name."""
    serializer: str
    """Serializer name, e.g. "numpy", "arrow-pandas", "pickle+zlib"."""
    size: int
    """Bytes stored."""

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "serializer": self.serializer, "size": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArtifactRef:
        try:
            key, serializer, size = d["key"], d["serializer"], d["size"]
        except (KeyError, TypeError):
            raise StoreError(
                f"not an artifact reference: {d!r} (expected keys: key, serializer, size)"
            ) from None
        if not (isinstance(key, str) and isinstance(serializer, str) and isinstance(size, int)):
            raise StoreError(f"not an artifact reference: {d!r} (wrong value types)")
        return cls(key, serializer, size)


class _HashingWriter:
    """A write-only file that hashes what goes through it: bytes are read once."""

    def __init__(self, raw: BinaryIO, path: Path):
        self._raw = raw
        self._path = path
        self._hash = xxhash.xxh3_128()
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        total = len(view)
        for start in range(0, total, _CHUNK):
            chunk = view[start : start + _CHUNK]
            self._hash.update(chunk)
            done = 0
            while done < len(chunk):  # unbuffered writes may be partial
                done += self._raw.write(chunk[done:])
        self.position += total
        return total

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class ArtifactStore:
    """Values kept once by content hash on a :class:`ByteBackend`, verified on read."""

    def __init__(self, backend: ByteBackend):
        self.backend = backend

    def __repr__(self) -> str:
        return f"ArtifactStore({self.backend!r})"

    @classmethod
    def from_url(cls, url: str | os.PathLike[str]) -> ArtifactStore:
        """A store from ``KEEL_ARTIFACT_URL``: a folder path, a ``file://`` URL, or
        ``s3://bucket/prefix`` (:mod:`keel.store.s3`, endpoint and credentials from the AWS variables).
        """
        text = os.fspath(url)
        if text.startswith("s3://"):
            from keel.store.s3 import S3Backend

            return cls(S3Backend.from_url(text))
        if text.startswith("file://"):
            parsed = urllib.parse.urlparse(text)
            if parsed.netloc not in ("", "localhost"):
                raise StoreError(
                    f"artifact store URL {text!r} names host {parsed.netloc!r}; "
                    "a file:// URL must be local: file:///absolute/path"
                )
            text = urllib.parse.unquote(parsed.path)
        elif "://" in text:
            scheme = text.split("://", 1)[0]
            raise StoreError(
                f"unsupported artifact store URL {text!r}: scheme {scheme!r} is unknown. "
                "Use a folder path, file:///path or s3://bucket/prefix"
            )
        return cls(LocalBackend(text))

    # -- writing ---------------------------------------------------------------

    def put(self, value: object) -> ArtifactRef:
        """Store ``value`` (once per distinct content) and return its reference."""
        encoded = serializers.encode(value)
        if encoded.data is not None:
            key = self.put_bytes(encoded.data)
            return ArtifactRef(key, encoded.name, len(encoded.data))
        assert encoded.write is not None
        key, size = self._put_stream(encoded.write)
        return ArtifactRef(key, encoded.name, size)

    def put_bytes(self, data: bytes) -> str:
        """Store raw bytes (a code snapshot, a log) by content; return the key."""
        key = _digest(data)
        if not self.backend.exists(key) or not self._healthy(key, len(data)):  # deduped onto good bytes only
            if len(data) < _MMAP_FROM:
                self.backend.write(key, data)  # small: one write, no second hash (bytes cannot change)
            else:
                self._put_stream(lambda out: out.write(data), key)
        return key

    def _healthy(self, key: str, size: int | None = None) -> bool:
        """Whether the existing blob ``key`` still holds its bytes; a damaged one is deleted, so that
        the write that found it stores the bytes again (a dedup never hands out a corrupted blob)."""
        if self.verify(key, size) is None:
            return True
        self.backend.delete(key)
        return False

    def verify(self, key: str, size: int | None = None) -> str | None:
        """None when blob ``key`` is there and matches its content hash (and ``size``), else what is wrong."""
        try:
            self._fetch(key, "", size)
        except ArtifactNotFound:
            return "missing"
        except ArtifactCorrupted as exc:
            return str(getattr(exc, "found", exc))
        except StoreError as exc:
            return str(exc)
        return None

    def _put_stream(self, write: Any, key: str | None = None) -> tuple[str, int]:
        temp = self.backend.new_temp()
        try:
            # Append to the empty temp file rather than truncate it ("wb"): on ext4 an
            # O_TRUNC open makes close() start writeback, which halves write speed.
            with open(temp, "ab", buffering=0) as raw:
                sink = _HashingWriter(raw, temp)
                write(sink)
        except OSError as exc:
            _unlink_quietly(temp)
            raise StoreError(f"cannot write artifact to {temp}: {_os_reason(exc)}") from exc
        except BaseException:
            _unlink_quietly(temp)
            raise
        digest = sink.hexdigest()
        if key is not None and digest != key:  # the bytes changed under us
            _unlink_quietly(temp)
            raise StoreError(f"bytes changed while being stored (expected {key}, got {digest})")
        if key is None and self.backend.exists(digest):  # a dedup: only onto a blob that is still sound
            self._healthy(digest, sink.position)
        self.backend.commit(temp, digest)
        return digest, sink.position

    # -- reading ---------------------------------------------------------------

    def get(self, ref: ArtifactRef, *, what: str = "") -> object:
        """Load the value behind ``ref`` after checking its bytes against ``ref.key``.

        ``what`` names the artifact in error messages, e.g.
        ``"artifact 'm' of BigSum/3/start/1"``.
        """
        data = self._fetch(ref.key, what, ref.size)
        try:
            return serializers.load(ref.serializer, data)
        except StoreError:
            raise
        except Exception as exc:
            label = what or f"artifact {ref.key}"
            raise serializers.SerializationError(
                f"{label} could not be loaded with serializer {ref.serializer!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def get_bytes(self, key: str, *, what: str = "") -> bytes:
        """The raw bytes stored under ``key``, checked against it."""
        data = self._fetch(key, what, None)
        return data if isinstance(data, bytes) else bytes(data)

    def _fetch(self, key: str, what: str, size: int | None) -> Any:
        """The blob's bytes, verified: a writable buffer for local blobs (big ones mapped
        copy-on-write), the backend's bytes otherwise."""
        path = self.backend.local_path(key)
        if path is None:
            try:
                data: Any = self.backend.read(key)
            except ArtifactNotFound:
                raise self._not_found(key, what) from None
        else:
            data = self._read_local(path, key, what)
        if size is not None and len(data) != size:
            raise self._corrupted(
                key, what, f"it is {len(data)} bytes long, {size} were stored"
            )
        actual = _digest(data)
        if actual != key:
            raise self._corrupted(key, what, f"its content hash is now {actual}")
        return data

    def _read_local(self, path: Path, key: str, what: str) -> Any:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise self._not_found(key, what) from None
        except OSError as exc:
            raise StoreError(
                f"cannot read {what or 'blob ' + key} at {path}: {_os_reason(exc)}"
            ) from exc
        try:
            size = os.fstat(fd).st_size
            if size >= _MMAP_FROM:
                # Copy-on-write: no RAM beyond the page cache, and callers may still
                # mutate what they get without touching the blob.
                return mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
            buf = bytearray(size)
            view = memoryview(buf)
            done = 0
            while done < size:
                n = os.readv(fd, [view[done:]])
                if n == 0:
                    break
                done += n
            return buf if done == size else buf[:done]
        except OSError as exc:
            raise StoreError(
                f"cannot read {what or 'blob ' + key} at {path}: {_os_reason(exc)}"
            ) from exc
        finally:
            os.close(fd)

    def _not_found(self, key: str, what: str) -> ArtifactNotFound:
        label = what or f"artifact {key}"
        exc = ArtifactNotFound(
            f"{label} not found: there is no blob {key} at {self.backend.location(key)}. "
            "Was the artifact store moved or cleaned, or does KEEL_ARTIFACT_URL point "
            "to another store?"
        )
        exc.key, exc.what = key, what  # type: ignore[attr-defined]
        return exc

    def _corrupted(self, key: str, what: str, found: str) -> ArtifactCorrupted:
        label = what or f"artifact {key}"
        exc = ArtifactCorrupted(
            f"{label} is corrupted: the bytes on disk changed after it was stored "
            f"(blob {key} at {self.backend.location(key)}: {found}). Delete the blob "
            "(or run keel store verify --repair) and rerun the step that produced it."
        )
        exc.key, exc.what, exc.found = key, what, found  # type: ignore[attr-defined]
        return exc
