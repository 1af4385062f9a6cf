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

from keel.errors import MetadataError

# Serialises the transactions that write events on PostgreSQL, so ids commit in order and a
# reader's cursor never skips an id that commits late (SQLite's write lock does this already).
EVENTS_LOCK_KEY = 0x6B65656D


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
        try:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[1] if "///" in url else ""
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
                if url.startswith(("postgresql://", "postgres://")):
                    url = "postgresql+psycopg://" + url.split("://", 1)[1]
                if url.startswith("postgresql+psycopg"):
                    _require_psycopg(self.url)
                self.engine = sa.create_engine(url, pool_pre_ping=True)
                self.writer = self.engine
            self._ensure_schema()
        except sa.exc.SQLAlchemyError as exc:
            raise MetadataError(f"cannot open the metadata database {redact(self.url)}: {exc.__class__.__name__}: "
                                f"{str(exc).splitlines()[0]}") from exc

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
        with self.writer.begin() as conn:
            yield conn

    def read(self) -> Any:
        return self.engine.connect()

    def lock_events(self, conn: Any) -> None:
        """Call before inserting events in ``conn``'s transaction (see EVENTS_LOCK_KEY)."""
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": EVENTS_LOCK_KEY})

    def upsert(self, conn: Any, table: sa.Table, row: dict[str, Any], key: tuple[str, ...]) -> None:
        """Insert the row, or update the columns it names when its key exists (one statement)."""
        if self.dialect in ("sqlite", "postgresql"):
            from sqlalchemy.dialects import postgresql, sqlite

            dialect: Any = sqlite if self.dialect == "sqlite" else postgresql  # the same insert API
            stmt = dialect.insert(table).values(**row)
            update = {k: stmt.excluded[k] for k in row if k not in key}
            conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=update))
            return
        where = [table.c[k] == row[k] for k in key]
        values = {k: v for k, v in row.items() if k not in key}
        if conn.execute(table.update().where(*where).values(**values)).rowcount == 0:
            conn.execute(table.insert().values(**row))


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
