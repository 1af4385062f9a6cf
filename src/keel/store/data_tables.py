"""Version records of Data Engine tables: which Parquet files make up ``weather@3``.

The files themselves are blobs in the artifact store's byte backend; this module keeps only
the metadata, one row per immutable version, through a small interface:

- :class:`DataTables` (a ``Protocol``): ``commit_version``, ``get_version``,
  ``list_versions``, ``list_tables``;
- :class:`SqlDataTables`: the metadata database (SQLite or PostgreSQL), tables defined on the
  same ``sa.MetaData`` as :mod:`keel.store.metadata` so they are created with its schema;
- :class:`MemoryDataTables`: an in-memory fake for tests of the layers above.

A version becomes visible only when its row is inserted, which happens in one transaction
after its files were written: a writer killed before that leaves unlisted files and no
partial version. Version numbers are allocated in that transaction (the table's largest plus
one) and a writer that loses the race to another retries with the next number; an append
reads its parent's files inside the same transaction, so concurrent appends lose no rows.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa

from keel.errors import MetadataError
from keel.store.schema import data_versions

__all__ = ["DataFile", "DataTables", "DataVersion", "MemoryDataTables", "NewVersion", "SqlDataTables",
           "TableSummary"]

@dataclass(frozen=True)
class DataFile:
    """One Parquet file of a version: its blob key in the byte backend, rows and bytes."""

    key: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class NewVersion:
    """What a writer hands the store; the store adds the number and, for appends, the parent."""

    name: str
    files: tuple[DataFile, ...]
    schema: str
    mode: str = "overwrite"
    lineage: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class DataVersion:
    """One immutable version of a table."""

    name: str
    version: int
    created_at: float
    mode: str
    parent: int | None
    rows: int
    bytes: int
    schema: str
    files: tuple[DataFile, ...]
    lineage: str | None
    user: str | None


@dataclass(frozen=True)
class TableSummary:
    """A table and its latest version, for listings."""

    name: str
    versions: int
    latest: DataVersion


@runtime_checkable
class DataTables(Protocol):
    def commit_version(self, new: NewVersion) -> DataVersion:
        """Publish a version atomically and return it (number allocated here)."""
        ...

    def get_version(self, name: str, version: int | None = None) -> DataVersion | None:
        """A version (the latest when ``version`` is None), or None."""
        ...

    def list_versions(self, name: str) -> list[DataVersion]:
        """Every version of ``name``, oldest first."""
        ...

    def list_tables(self) -> list[TableSummary]: ...


def _build(new: NewVersion, version: int, parent: DataVersion | None, now: float) -> DataVersion:
    files = new.files
    if new.mode == "append" and parent is not None:
        files = parent.files + files
    return DataVersion(
        name=new.name, version=version, created_at=now, mode=new.mode,
        parent=parent.version if (new.mode == "append" and parent is not None) else None,
        rows=sum(f.rows for f in files), bytes=sum(f.bytes for f in files), schema=new.schema,
        files=files, lineage=new.lineage, user=new.user)


class MemoryDataTables:
    """Versions in a dict: the fake for tests. Not shared across processes."""

    def __init__(self) -> None:
        self._versions: dict[str, list[DataVersion]] = {}
        self._lock = threading.Lock()

    def commit_version(self, new: NewVersion) -> DataVersion:
        with self._lock:
            existing = self._versions.setdefault(new.name, [])
            parent = existing[-1] if existing else None
            v = _build(new, (parent.version if parent else 0) + 1, parent, time.time())
            existing.append(v)
            return v

    def get_version(self, name: str, version: int | None = None) -> DataVersion | None:
        found = self._versions.get(name) or []
        if version is None:
            return found[-1] if found else None
        return next((v for v in found if v.version == version), None)

    def list_versions(self, name: str) -> list[DataVersion]:
        return list(self._versions.get(name) or [])

    def list_tables(self) -> list[TableSummary]:
        return [TableSummary(n, len(vs), vs[-1]) for n, vs in sorted(self._versions.items()) if vs]


def _row_to_version(r: Any) -> DataVersion:
    return DataVersion(
        name=r.name, version=int(r.version), created_at=float(r.created_at), mode=r.mode,
        parent=r.parent, rows=int(r.rows), bytes=int(r.bytes), schema=r.schema,
        files=tuple(DataFile(k, int(n), int(b)) for k, n, b in json.loads(r.files)),
        lineage=r.lineage, user=r.user)


class SqlDataTables:
    """Versions in the metadata database, through the engines of a ``MetadataStore``."""

    def __init__(self, engine: sa.Engine, writer: sa.Engine | None = None):
        self.engine = engine
        self._writer = writer or engine  # the table comes with the schema (migration 0003)

    @classmethod
    def from_metadata(cls, metadata: Any) -> "SqlDataTables":
        """Share the engines of a :class:`keel.store.metadata.MetadataStore`."""
        return cls(metadata.db.engine, metadata.db.writer)

    def commit_version(self, new: NewVersion) -> DataVersion:
        last_error: Exception | None = None
        for attempt in range(50):
            try:
                with self._writer.begin() as conn:
                    row = conn.execute(
                        sa.select(data_versions).where(data_versions.c.name == new.name)
                        .order_by(data_versions.c.version.desc()).limit(1)).first()
                    parent = _row_to_version(row) if row is not None else None
                    v = _build(new, (parent.version if parent else 0) + 1, parent, time.time())
                    conn.execute(data_versions.insert().values(
                        name=v.name, version=v.version, created_at=v.created_at, mode=v.mode,
                        parent=v.parent, rows=v.rows, bytes=v.bytes, schema=v.schema,
                        files=json.dumps([[f.key, f.rows, f.bytes] for f in v.files]),
                        lineage=v.lineage, user=v.user))
                    return v
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                # Another writer took the number (PostgreSQL), or SQLite stayed locked: retry.
                last_error = exc
                time.sleep(min(0.002 * (attempt + 1), 0.05))
        raise MetadataError(f"could not commit a new version of table {new.name!r} after 50 tries: "
                            f"{str(last_error).splitlines()[0] if last_error else ''}")

    def get_version(self, name: str, version: int | None = None) -> DataVersion | None:
        if version is not None and not 0 < version < 2**63:
            return None                 # no such version (and beyond what the database can compare)
        q = sa.select(data_versions).where(data_versions.c.name == name)
        if version is None:
            q = q.order_by(data_versions.c.version.desc()).limit(1)
        else:
            q = q.where(data_versions.c.version == version)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return _row_to_version(row) if row is not None else None

    def list_versions(self, name: str) -> list[DataVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(data_versions).where(data_versions.c.name == name)
                                .order_by(data_versions.c.version)).all()
        return [_row_to_version(r) for r in rows]

    def list_tables(self) -> list[TableSummary]:
        counts = (sa.select(data_versions.c.name, sa.func.count().label("n"),
                            sa.func.max(data_versions.c.version).label("latest"))
                  .group_by(data_versions.c.name).subquery())
        q = (sa.select(data_versions, counts.c.n)
             .join(counts, sa.and_(counts.c.name == data_versions.c.name,
                                   counts.c.latest == data_versions.c.version))
             .order_by(data_versions.c.name))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [TableSummary(r.name, int(r.n), _row_to_version(r)) for r in rows]

