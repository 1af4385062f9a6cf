"""The SQL database under the store's interfaces: engines, write transactions, upserts.

One schema (``keel.store.schema``), two dialects: SQLite (the default, WAL mode) and
PostgreSQL (``postgresql://...``, driver from ``pip install 'keel[postgres]'``). Opening a
database brings its schema to the head (``keel.store.versions``).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event

from keel.errors import MetadataError, UsageError

# Serialises the transactions that write events on PostgreSQL, so ids commit in order and a
# reader's cursor never skips an id that commits late (SQLite's write lock does this already).
EVENTS_LOCK_KEY = 0x6B65656D


def _cannot_write(path: str) -> bool:
    """An existing SQLite file that this user cannot write, or whose folder it cannot write (WAL needs it);
    ``KEEL_READ_ONLY=1`` opens any existing store so (an archive on a writable disk, root browsing one)."""
    if not os.path.exists(path):
        return False
    from keel.settings import Settings

    if Settings.from_env().read_only:
        return True
    return not (os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=OFF")
    cur.close()


class Database:
    """Engines for reading (``engine``) and writing (:meth:`write`) one metadata database."""

    def __init__(self, url: str):
        self.url = url
        self._upserts: dict[tuple[str, tuple[str, ...]], Any] = {}  # upsert statements by (table, columns)
        self.read_only = False  # a store this user cannot write (shared, archived): browse it, change nothing
        try:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[1] if "///" in url else ""
                if path and path != ":memory:" and _cannot_write(path):
                    self._open_read_only(path)
                    return
                if path and path != ":memory:":
                    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                args = {"timeout": 60, "isolation_level": None}
                # Readers run in autocommit; writers BEGIN IMMEDIATE so that they queue on the
                # write lock (busy_timeout) instead of failing to upgrade a read lock.
                self.engine = sa.create_engine(url, connect_args=args)
                self.writer = sa.create_engine(url, connect_args=args)
                for engine in (self.engine, self.writer):
                    event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(self.writer, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            else:
                dialect = url.split("://", 1)[0].split("+", 1)[0].lower()
                if dialect not in ("postgresql", "postgres"):
                    raise UsageError(f"KEEL_METADATA_URL={redact(url)}: the metadata store runs on SQLite or "
                                     f"PostgreSQL; write sqlite:///path/metadata.db or postgresql://user@host/db")
                if url.startswith(("postgresql://", "postgres://")):
                    url = "postgresql+psycopg://" + url.split("://", 1)[1]
                if url.startswith("postgresql+psycopg"):
                    _require_psycopg(self.url)
                self.engine = sa.create_engine(url, pool_pre_ping=True)
                self.writer = self.engine
            self._ensure_schema()
        except ImportError as exc:
            raise MetadataError(missing_driver(self.url, exc, "KEEL_METADATA_URL")) from None
        except sa.exc.SQLAlchemyError as exc:
            raise MetadataError(f"cannot open the metadata database {redact(self.url)}: {exc.__class__.__name__}: "
                                f"{str(exc).splitlines()[0]}") from exc

    def _open_read_only(self, path: str) -> None:
        """SQLite opened immutable: no lock, no WAL files, no migration. Writes fail with a clear message."""
        import sqlite3
        import urllib.parse

        from keel.store.versions import schema_revision
        from keel.store.schema import SCHEMA_HEAD

        self.read_only = True
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
        self.engine = sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(
            uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False))
        self.writer = self.engine
        revision = schema_revision(self.engine)
        if revision != SCHEMA_HEAD:
            raise MetadataError(
                f"the metadata database {path} is read-only for you and has schema {revision or 'of Keel 0.1'!r}, "
                f"not {SCHEMA_HEAD!r}, which this Keel reads; it cannot be migrated without write access. "
                f"Copy the store somewhere writable (cp -r) and set KEEL_HOME to the copy, or read it with the "
                f"Keel that made it")

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def _ensure_schema(self) -> None:
        from keel.store.versions import ensure_schema

        for attempt in range(5):
            try:
                ensure_schema(self.writer, self.url)
                return
            except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def close(self) -> None:
        self.engine.dispose()
        self.writer.dispose()

    @contextmanager
    def write(self) -> Iterator[Any]:
        """One write transaction (SQLite: holds the database's write lock from its start)."""
        if self.read_only:
            raise MetadataError(f"the metadata database {redact(self.url)} is read-only for you: it can be "
                                f"browsed (keel runs, show, logs), not changed. Ask its owner, or copy the store")
        with self.writer.begin() as conn:
            yield conn

    def read(self) -> Any:
        return self.engine.connect()

    def lock_events(self, conn: Any) -> None:
        """Call before inserting events in ``conn``'s transaction (see EVENTS_LOCK_KEY)."""
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": EVENTS_LOCK_KEY})

    def upsert_many(self, conn: Any, table: sa.Table, columns: tuple[str, ...], rows: list[dict[str, Any]],
                    key: tuple[str, ...]) -> None:
        """Upsert rows that all name ``columns`` in one executemany, with a statement built once
        per (table, columns)."""
        if self.dialect not in ("sqlite", "postgresql"):
            for row in rows:
                self.upsert(conn, table, row, key)
            return
        stmt = self._upserts.get((table.name, columns))
        if stmt is None:
            ins = dialect_insert(self.dialect, table)
            update = {k: ins.excluded[k] for k in columns if k not in key}
            stmt = self._upserts[(table.name, columns)] = ins.on_conflict_do_update(index_elements=list(key),
                                                                                    set_=update)
        conn.execute(stmt, rows)

    def upsert(self, conn: Any, table: sa.Table, row: dict[str, Any], key: tuple[str, ...]) -> None:
        """Insert the row, or update the columns it names when its key exists (one statement)."""
        if self.dialect in ("sqlite", "postgresql"):
            stmt = dialect_insert(self.dialect, table).values(**row)
            update = {k: stmt.excluded[k] for k in row if k not in key}
            conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=update))
            return
        where = [table.c[k] == row[k] for k in key]
        values = {k: v for k, v in row.items() if k not in key}
        if conn.execute(table.update().where(*where).values(**values)).rowcount == 0:
            conn.execute(table.insert().values(**row))


def dialect_insert(dialect: str, table: sa.Table) -> Any:
    """SQLite's or PostgreSQL's INSERT (both have ``on_conflict_do_update``), importing only the
    dialect in use: PostgreSQL's takes ~45 ms to import, a tenth of a short command's start."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(table)


_DRIVERS = {  # dialect -> (what it is, the extra that installs its driver, how to write the URL)
    "postgresql": ("PostgreSQL", "keel[postgres]", "postgresql://user@host/db"),
    "mysql": ("MySQL", "keel[mysql]", "mysql+pymysql://user@host/db"),
    "mariadb": ("MariaDB", "keel[mysql]", "mariadb+pymysql://user@host/db"),
}


def missing_driver(url: str, exc: ImportError, setting: str = "the URL") -> str:
    """A message for a database URL whose driver is not installed, naming the extra to install."""
    dialect = url.split("://", 1)[0].split("+", 1)[0].lower()
    module = getattr(exc, "name", None) or str(exc)
    name, extra, example = _DRIVERS.get(dialect, (dialect, "", ""))
    how = (f"Install it with: pip install '{extra}' (then write the URL as {example})" if extra
           else f"Install the Python package that provides {module}")
    return f"{setting} is a {name} URL ({redact(url)}) but its driver ({module}) is not installed. {how}"


def _require_psycopg(url: str) -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MetadataError(f"KEEL_METADATA_URL is a PostgreSQL URL ({redact(url)}) but the PostgreSQL driver "
                            f"is not installed. Install it with: pip install 'keel[postgres]'") from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as its scheme only
        return url.split("://", 1)[0] + "://..."
