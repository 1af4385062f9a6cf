"""Byte backends: the dumb bottom layer of the artifact store.

A backend keeps opaque blobs under string keys and knows nothing about what they
mean. Writers fill a local temp file from :meth:`ByteBackend.new_temp` and hand it to
:meth:`ByteBackend.commit`, which publishes it under its key atomically: a reader sees
either the whole blob or no blob, never a partial one.

    >>> backend = LocalBackend("/tmp/keel-artifacts")
    >>> temp = backend.new_temp()
    >>> temp.write_bytes(b"hello")
    5
    >>> backend.commit(temp, "5d41402abc4b2a76")    # False if the key already existed
    True

Content addressing, hashing and serializers live above this layer
(:mod:`keel.store.artifacts`); a backend never looks inside a blob.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from keel.errors import ArtifactNotFound, StoreError

__all__ = ["ByteBackend", "LocalBackend", "MemoryBackend"]

# Keys become file and object names: allow no separators, no dots, no traversal.
_KEY = re.compile(r"[0-9A-Za-z_-]{3,200}")
_TEMP_DIR = "tmp"


def _check_key(key: str) -> str:
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise StoreError(
            f"invalid blob key {key!r}: expected 3 to 200 letters, digits, '_' or '-' "
            "(a content hash in hex)"
        )
    return key


def _os_reason(exc: OSError) -> str:
    if exc.errno is not None:
        return f"{os.strerror(exc.errno)} ({errno.errorcode.get(exc.errno, exc.errno)})"
    return str(exc)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@runtime_checkable
class ByteBackend(Protocol):
    """Where blobs are kept: a local folder now, S3 later. Keys are short hex strings."""

    def new_temp(self) -> Path:
        """Create and return an empty local file for a writer to fill, then commit."""
        ...

    def commit(self, temp: Path, key: str) -> bool:
        """Publish ``temp`` as blob ``key`` atomically and consume ``temp``.

        Returns False (and removes ``temp``) when ``key`` already existed.
        """
        ...

    def exists(self, key: str) -> bool: ...

    def open(self, key: str) -> BinaryIO:
        """Open the blob for reading; raises ArtifactNotFound if there is none."""
        ...

    def read(self, key: str) -> bytes: ...

    def local_path(self, key: str) -> Path | None:
        """The blob's path on a local filesystem (for memory mapping), else None."""
        ...

    def write(self, key: str, data: bytes) -> bool:
        """Store a small blob atomically; False when ``key`` already existed."""
        ...

    def delete(self, key: str) -> None: ...

    def size(self, key: str) -> int: ...

    def keys(self) -> Iterator[str]: ...

    def location(self, key: str) -> str:
        """Where the blob is, for messages: a path or a URL."""
        ...


class LocalBackend:
    """Blobs in a local folder: ``root/ab/abcdef...``, temp files in ``root/tmp/``.

    Temp files live under the same root so publishing is a same-filesystem link or
    rename. Set ``fsync=True`` to flush each blob to the device before it becomes
    visible (survives power loss, costs a disk flush per write); without it a process
    crash still never exposes a partial blob, and a torn write after a power loss is
    caught by the hash check when the blob is read.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False):
        self.root = Path(root).expanduser().absolute()
        self.fsync = fsync
        self._root_str = str(self.root)
        self._temp_ready = False

    def __repr__(self) -> str:
        return f"LocalBackend({self._root_str!r})"

    def _path(self, key: str) -> str:
        _check_key(key)
        return os.path.join(self._root_str, key[:2], key)

    # -- writing ---------------------------------------------------------------

    def new_temp(self) -> Path:
        fd, path = self._open_temp()
        os.close(fd)
        return Path(path)

    def _open_temp(self) -> tuple[int, str]:
        """A new empty temp file, open for writing: (fd, path)."""
        temp_dir = os.path.join(self._root_str, _TEMP_DIR)
        path = os.path.join(temp_dir, f"{os.getpid()}-{os.urandom(16).hex()}")
        try:
            if not self._temp_ready:
                os.makedirs(temp_dir, exist_ok=True)
                self._temp_ready = True
            # O_EXCL: the name is ours alone; mode 0o666 & umask, unlike mkstemp's 0o600,
            # so a store shared by a team stays readable.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise StoreError(
                f"cannot create a temp file in {temp_dir}: {_os_reason(exc)}"
            ) from exc
        return fd, path

    def commit(self, temp: str | os.PathLike[str], key: str) -> bool:
        try:
            dest = self._path(key)
        except StoreError:
            _unlink_quietly(temp)
            raise
        try:
            if self.fsync:
                fd = os.open(temp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            try:
                os.mkdir(os.path.dirname(dest))
            except FileExistsError:
                pass
            created = self._publish(os.fspath(temp), dest)
            if created and self.fsync:
                fd = os.open(os.path.dirname(dest), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            _unlink_quietly(temp)
            raise StoreError(f"cannot store blob at {dest}: {_os_reason(exc)}") from exc
        _unlink_quietly(temp)
        return created

    @staticmethod
    def _publish(temp: str, dest: str) -> bool:
        # link() never replaces an existing name, so the first writer wins and the
        # blob under a key is never rewritten. Filesystems without hard links fall
        # back to replace(), which is still atomic; same key means same bytes.
        try:
            os.link(temp, dest)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                                 errno.EMLINK, errno.ENOSYS):
                raise
        if os.path.exists(dest):
            return False
        os.replace(temp, dest)
        return True

    def write(self, key: str, data: bytes) -> bool:
        _check_key(key)
        if self.exists(key):
            return False
        fd, temp = self._open_temp()  # written through the fd that made it: one open, no O_TRUNC
        try:
            try:
                _write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            _unlink_quietly(temp)
            raise StoreError(f"cannot write artifact to {temp}: {_os_reason(exc)}") from exc
        return self.commit(temp, key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot delete blob {path}: {_os_reason(exc)}") from exc

    # -- reading ---------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise ArtifactNotFound(f"no blob {key} at {path}") from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {path}: {_os_reason(exc)}") from exc

    def read(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            raise ArtifactNotFound(f"no blob {key} at {path}") from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {path}: {_os_reason(exc)}") from exc

    def local_path(self, key: str) -> Path | None:
        return Path(self._path(key))

    def location(self, key: str) -> str:
        return self._path(key)

    def keys(self) -> Iterator[str]:
        try:
            shards = sorted(os.scandir(self._root_str), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for shard in shards:
            if shard.name == _TEMP_DIR or not shard.is_dir():
                continue
            for entry in sorted(os.scandir(shard.path), key=lambda e: e.name):
                if entry.is_file() and _KEY.fullmatch(entry.name):
                    yield entry.name


class MemoryBackend:
    """Blobs in a dict: a fake for tests of the layers above. Not shared across processes.

    Writers still fill a real temp file (in a private temp folder), so code above
    the backend runs the same path as with :class:`LocalBackend`.
    """

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._temp_dir: str | None = None

    def __repr__(self) -> str:
        return f"MemoryBackend({len(self._blobs)} blobs)"

    def new_temp(self) -> Path:
        if self._temp_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="keel-memory-")
            weakref.finalize(self, shutil.rmtree, self._temp_dir, True)
        fd, path = tempfile.mkstemp(dir=self._temp_dir)
        os.close(fd)
        return Path(path)

    def commit(self, temp: Path, key: str) -> bool:
        try:
            _check_key(key)
            with open(temp, "rb") as f:
                data = f.read()
        finally:
            _unlink_quietly(temp)
        return self.write(key, data)

    def write(self, key: str, data: bytes) -> bool:
        _check_key(key)
        with self._lock:
            if key in self._blobs:
                return False
            self._blobs[key] = bytes(data)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._blobs.pop(_check_key(key), None)

    def exists(self, key: str) -> bool:
        return _check_key(key) in self._blobs

    def read(self, key: str) -> bytes:
        try:
            return self._blobs[_check_key(key)]
        except KeyError:
            raise ArtifactNotFound(f"no blob {key} at {self.location(key)}") from None

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.read(key))

    def size(self, key: str) -> int:
        return len(self.read(key))

    def local_path(self, key: str) -> Path | None:
        return None

    def location(self, key: str) -> str:
        return f"memory:{key}"

    def keys(self) -> Iterator[str]:
        return iter(sorted(self._blobs))

    # Tests corrupt blobs through this; real code never rewrites a blob.
    def _replace(self, key: str, data: bytes) -> None:
        self._blobs[_check_key(key)] = bytes(data)
