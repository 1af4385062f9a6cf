"""Serializers: how a Python value becomes the bytes of a blob, and back.

Chosen by the value's type, tried in order:

==================  ===========================================================
``numpy``           a NumPy ndarray (not object dtype), as a standard ``.npy`` file
                    written straight from the array's buffer; read back memory
                    mapped copy-on-write when the blob is a local file.
``arrow-pandas``    a pandas DataFrame, as an Arrow IPC file (Feather v2).
``arrow-table``     a pyarrow Table, as an Arrow IPC file; read back zero-copy.
``pickle``          anything else, pickle protocol 5, falling back to cloudpickle
``cloudpickle``     for lambdas, closures and anything defined in ``__main__``.
``...+zlib``        a pickle of at least 4 KiB that zlib (level 1) shrinks by 20%+.
==================  ===========================================================

The name is stored with the artifact (``ArtifactRef.serializer``) and is stable:
:func:`load` must read every name it has ever written. pandas, pyarrow and numpy are
imported only when a value of theirs is stored or read, so ``import keel`` stays fast.
"""

from __future__ import annotations

import io
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from keel.errors import SerializationError, StoreError

__all__ = ["Encoded", "SerializationError", "Serializer", "SERIALIZERS", "encode", "load"]

COMPRESS_MIN_BYTES = 4096
"""Pickles smaller than this are stored as they are."""
COMPRESS_MIN_SAVING = 0.20
"""A compressed pickle is kept only if it is at least this much smaller."""
_SAMPLE_FROM = 1 << 20  # above this size, compress a sample first to see if it pays
_SAMPLE_SIZE = 128 << 10
_PICKLE_PROTOCOL = 5


@dataclass(frozen=True)
class Encoded:
    """A serialized value: ``data`` in memory, or a ``write`` that streams it to a file.

    Exactly one of the two is set. ``name`` is the serializer name to store.
    """

    name: str
    data: bytes | None = None
    write: Callable[[BinaryIO], None] | None = None


class Serializer(Protocol):
    """One way to turn values into bytes. ``names`` lists every name it can load."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def accepts(self, value: object) -> bool: ...

    def dump(self, value: object) -> Encoded | None:
        """The encoded value, or None to decline it (the next serializer is tried)."""
        ...

    def load(self, name: str, data: Any) -> object:
        """Decode ``data`` (a bytes-like buffer, possibly a writable mmap)."""
        ...


def _type_of(value: object) -> tuple[str, str]:
    cls = type(value)
    return cls.__module__, cls.__qualname__


# -- NumPy ---------------------------------------------------------------------


class NumpySerializer:
    """ndarray <-> ``.npy``: header, then the raw buffer, no copy of a contiguous array."""

    names = ("numpy",)

    def accepts(self, value: object) -> bool:
        # Exact type: subclasses (np.matrix, masked arrays) keep their class via pickle.
        return _type_of(value) == ("numpy", "ndarray") and not value.dtype.hasobject  # type: ignore[attr-defined]

    def dump(self, value: Any) -> Encoded:
        import numpy as np

        arr = value
        if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
            arr = np.ascontiguousarray(arr)
        header = io.BytesIO()
        fields = np.lib.format.header_data_from_array_1_0(arr)
        try:
            np.lib.format.write_array_header_1_0(header, fields)
        except ValueError:  # a header over 64 KiB (huge structured dtypes)
            header = io.BytesIO()
            np.lib.format.write_array_header_2_0(header, fields)
        # .npy stores a Fortran-ordered array as the C-order bytes of its transpose.
        flat = arr.T if fields["fortran_order"] else arr
        body = memoryview(flat.reshape(-1).view(np.uint8))
        head = header.getvalue()

        def write(out: BinaryIO) -> None:
            out.write(head)
            out.write(body)

        return Encoded("numpy", write=write)

    def load(self, name: str, data: Any) -> object:
        import numpy as np

        view = memoryview(data)
        if bytes(view[:6]) != b"\x93NUMPY" or len(view) < 10:
            raise SerializationError("not a .npy blob: the magic bytes are missing")
        major = view[6]
        start = 10 if major == 1 else 12
        length = int.from_bytes(view[8:start], "little")
        head = io.BytesIO(view[: start + length])
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise SerializationError(f"unsupported .npy version {version}")
        offset = start + length
        count = 1
        for dim in shape:
            count *= dim
        if count == 0:
            return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        arr = np.ndarray(shape, dtype=dtype, buffer=data, offset=offset,
                         order="F" if fortran else "C")
        # A read-only buffer (bytes from a remote backend): give the caller its own copy,
        # so arrays read back are always writable, as np.load's are.
        return arr.copy(order="K") if view.readonly else arr


# -- Arrow ---------------------------------------------------------------------


def _arrow_writer(table: Any) -> Callable[[BinaryIO], None]:
    def write(out: BinaryIO) -> None:
        import pyarrow as pa

        # Uncompressed, so a local blob is read back zero-copy from the memory map.
        with pa.ipc.new_file(out, table.schema) as writer:
            writer.write_table(table)

    return write


def _arrow_read(data: Any) -> Any:
    import pyarrow as pa

    return pa.ipc.open_file(pa.BufferReader(pa.py_buffer(data))).read_all()


class ArrowTableSerializer:
    """pyarrow.Table <-> Arrow IPC file."""

    names = ("arrow-table",)

    def accepts(self, value: object) -> bool:
        module, name = _type_of(value)
        return name == "Table" and module.startswith("pyarrow")

    def dump(self, value: object) -> Encoded:
        return Encoded("arrow-table", write=_arrow_writer(value))

    def load(self, name: str, data: Any) -> object:
        return _arrow_read(data)


class ArrowPandasSerializer:
    """pandas.DataFrame <-> Arrow IPC file, for frames Arrow can round-trip faithfully.

    Frames with duplicate or multi-level column labels, or object columns holding
    anything but strings (lists, dicts, mixed types), are left to pickle: Arrow would
    give them back changed.
    """

    names = ("arrow-pandas",)

    def accepts(self, value: object) -> bool:
        module, name = _type_of(value)
        return name == "DataFrame" and module.startswith("pandas")

    def dump(self, value: Any) -> Encoded | None:
        import pandas as pd
        import pyarrow as pa

        columns = value.columns
        if isinstance(columns, pd.MultiIndex) or not columns.is_unique:
            return None
        for _, column in value.items():
            if column.dtype == object and pd.api.types.infer_dtype(
                column, skipna=True
            ) not in ("string", "empty"):
                return None
        try:
            table = pa.Table.from_pandas(value)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            return None
        return Encoded("arrow-pandas", write=_arrow_writer(table))

    def load(self, name: str, data: Any) -> object:
        return _arrow_read(data).to_pandas()


# -- pickle --------------------------------------------------------------------


def _compress(data: bytes) -> bytes | None:
    """zlib level 1, kept only if it saves COMPRESS_MIN_SAVING; None when it does not pay."""
    if len(data) < COMPRESS_MIN_BYTES:
        return None
    if len(data) >= _SAMPLE_FROM:
        # Do not spend seconds compressing a big pickle of random floats: try a piece.
        mid = len(data) // 2
        sample = data[:_SAMPLE_SIZE] + data[mid : mid + _SAMPLE_SIZE]
        if len(zlib.compress(sample, 1)) > len(sample) * (1 - COMPRESS_MIN_SAVING):
            return None
    packed = zlib.compress(data, 1)
    return packed if len(packed) <= len(data) * (1 - COMPRESS_MIN_SAVING) else None


class PickleSerializer:
    """Anything else: pickle protocol 5, or cloudpickle where plain pickle cannot work.

    Plain pickle stores functions and classes by reference; a reference into
    ``__main__`` (a flow file run as a script, a notebook) cannot be loaded by another
    process, so such pickles are redone with cloudpickle, which stores them by value.
    """

    names = ("pickle", "pickle+zlib", "cloudpickle", "cloudpickle+zlib")

    def accepts(self, value: object) -> bool:
        return True

    def dump(self, value: object) -> Encoded:
        name = "pickle"
        try:
            data = pickle.dumps(value, protocol=_PICKLE_PROTOCOL)
        except Exception as exc:  # lambdas, closures, local classes, ...
            first: Exception | None = exc
        else:
            first = None
        if first is not None or b"__main__" in data:
            import cloudpickle

            try:
                data = cloudpickle.dumps(value, protocol=_PICKLE_PROTOCOL)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                raise SerializationError(
                    f"cannot store a value of type {type(value).__module__}."
                    f"{type(value).__qualname__}: neither pickle nor cloudpickle can "
                    f"serialize it ({reason}). Store something picklable instead, "
                    "or keep it out of self (a name starting with '_' is not stored)."
                ) from exc
            name = "cloudpickle"
        packed = _compress(data)
        if packed is not None:
            return Encoded(name + "+zlib", data=packed)
        return Encoded(name, data=data)

    def load(self, name: str, data: Any) -> object:
        if name.startswith("cloudpickle"):
            import cloudpickle  # noqa: F401  (by-value functions need it importable)
        if name.endswith("+zlib"):
            data = zlib.decompress(data)
        return pickle.loads(data)


SERIALIZERS: tuple[Serializer, ...] = (
    NumpySerializer(),
    ArrowPandasSerializer(),
    ArrowTableSerializer(),
    PickleSerializer(),
)
"""Tried in this order; the last accepts everything."""

_BY_NAME: dict[str, Serializer] = {n: s for s in SERIALIZERS for n in s.names}


def encode(value: object) -> Encoded:
    """Serialize ``value`` with the first serializer that accepts it."""
    for serializer in SERIALIZERS:
        if serializer.accepts(value):
            encoded = serializer.dump(value)
            if encoded is not None:  # None: the serializer declined this value; try the next
                return encoded
    raise AssertionError("the pickle serializer accepts every value")  # pragma: no cover


def load(name: str, data: Any) -> object:
    """Decode bytes stored under serializer ``name``. Raises SerializationError if unknown."""
    serializer = _BY_NAME.get(name)
    if serializer is None:
        known = ", ".join(sorted(_BY_NAME))
        raise SerializationError(
            f"unknown serializer {name!r} (this version of Keel reads: {known}); "
            "the artifact was probably written by a newer Keel"
        )
    return serializer.load(name, data)
