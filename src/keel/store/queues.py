"""Queue backends: where the queue add-on keeps its messages.

One small interface, ``QueueBackend``, with three implementations:

- ``SqliteQueueBackend``: the default, its own file ``KEEL_HOME/queues.db`` (WAL). Every
  change is one short ``BEGIN IMMEDIATE`` transaction taken under an ``flock`` on a lock file
  beside the database, so concurrent consumers wait in the kernel's queue (woken the moment
  the lock is free) instead of SQLite's sleep-and-retry busy handler: no "database is
  locked" and no lost time under 10 consumer processes.
- ``RedisQueueBackend`` (``keel.store.queues_redis``): Redis Streams and consumer groups.
- ``MemoryQueueBackend``: an in-process fake for tests.

A message that a consumer reserved carries a lease (``lease_s`` seconds); while the consumer
lives it extends the lease (``extend``), and a message whose lease ran out is reserved again
by the next consumer. Each delivery increments ``deliveries``; a message about to be
delivered more than ``max_deliveries`` times goes to the queue ``NAME.dead`` instead (as a
new message there: its deliveries start again at 0).
The lease is identified by a token, so an acknowledgement from a consumer that lost its
lease (it was too slow, the message went to someone else) changes nothing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

DEAD_SUFFIX = ".dead"


@dataclass(frozen=True)
class NewMessage:
    """A message to put: its encoded body, when it becomes visible, its priority and key."""

    body: bytes
    delay: float = 0.0
    priority: int = 0
    key: str | None = None


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message to a consumer. ``token`` names this lease."""

    queue: str
    id: str
    body: bytes
    deliveries: int
    enqueued_at: float
    token: str


@dataclass(frozen=True)
class QueueStats:
    """What a queue holds now. ``depth`` counts messages ready or delayed, not in flight."""

    name: str
    ready: int
    delayed: int
    in_flight: int
    closed: bool
    oldest_enqueued_at: float | None

    @property
    def depth(self) -> int:
        return self.ready + self.delayed

    @property
    def empty(self) -> bool:
        """Nothing left at all: no message ready, delayed, or held by a consumer."""
        return self.ready + self.delayed + self.in_flight == 0


class QueueBackend(Protocol):
    """Where the messages of every queue of one KEEL_HOME (or Redis database) live."""

    def put(self, queue: str, messages: list[NewMessage]) -> int:
        """Add messages; a message whose key was used before is skipped. Returns how many were added."""

    def reserve(self, queue: str, lease_s: float, max_deliveries: int,
                acks: Sequence[Delivery] = ()) -> Delivery | None:
        """The next visible message (highest priority, then oldest), leased for ``lease_s``;
        ``acks`` are acknowledged first, in the same transaction (a consumer's loop costs one)."""

    prefetch: int
    """How many messages ``reserve_many`` hands out at most per call (1: no local prefetch)."""

    def reserve_many(self, queue: str, lease_s: float, max_deliveries: int, acks: Sequence[Delivery] = (),
                     count: int = 1) -> list[Delivery]:
        """Up to ``count`` visible messages (as ``reserve``), each leased; ``acks`` first."""

    def send_acks(self, acks: Sequence[Delivery]) -> None:
        """Acknowledge these now, without waiting for the answer (sent before this returns)."""

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back prefetched messages that were never handed out (not counted as delivered)."""

    def ack(self, delivery: Delivery) -> bool:
        """The message is done: remove it. False when the lease was lost meanwhile."""

    def nack(self, delivery: Delivery, max_deliveries: int) -> None:
        """Give the message back to be delivered again at once (or to ``NAME.dead``)."""

    def extend(self, deliveries: list[Delivery], lease_s: float) -> None:
        """Heartbeat: the consumer still works on these; push their leases forward."""

    def close(self, queue: str) -> None:
        """The producers are done."""

    def stats(self, queue: str) -> QueueStats:
        ...

    def queues(self) -> list[QueueStats]:
        ...

    def peek(self, queue: str, limit: int) -> list[Delivery]:
        """The next messages, in delivery order, without reserving them (token is empty)."""

    def purge(self, queue: str) -> int:
        """Remove the queue's messages, keys and closed flag; returns how many messages went."""


def _token() -> str:
    return uuid.uuid4().hex


class _OneAtATime:
    """``reserve_many``/``send_acks``/``release`` for a backend that hands out one message per
    call (a transaction is as cheap as the round trip it would save)."""

    prefetch = 1

    def reserve_many(self, queue: str, lease_s: float, max_deliveries: int, acks: Sequence[Delivery] = (),
                     count: int = 1) -> list[Delivery]:
        got = self.reserve(queue, lease_s, max_deliveries, acks)  # type: ignore[attr-defined]
        return [] if got is None else [got]

    def send_acks(self, acks: Sequence[Delivery]) -> None:
        for delivery in acks:
            self.ack(delivery)  # type: ignore[attr-defined]

    def release(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            self.nack(delivery, 1 << 30)  # type: ignore[attr-defined]


# -- in memory --------------------------------------------------------------------------------
@dataclass
class _Mem:
    id: int
    body: bytes
    priority: int
    available_at: float
    enqueued_at: float
    deliveries: int = 0
    token: str | None = None


class MemoryQueueBackend(_OneAtATime):
    """Every queue in a dict, for tests of code that uses queues. Thread-safe, one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._msgs: dict[str, dict[int, _Mem]] = {}
        self._keys: dict[str, set[str]] = {}
        self._closed: set[str] = set()
        self._next = 0

    def _add(self, queue: str, m: NewMessage, now: float, deliveries: int = 0) -> bool:
        if m.key is not None:
            keys = self._keys.setdefault(queue, set())
            if m.key in keys:
                return False
            keys.add(m.key)
        self._next += 1
        self._msgs.setdefault(queue, {})[self._next] = _Mem(self._next, m.body, m.priority, now + m.delay, now,
                                                             deliveries)
        return True

    def put(self, queue: str, messages: list[NewMessage]) -> int:
        now = time.time()
        with self._lock:
            self._msgs.setdefault(queue, {})
            return sum(self._add(queue, m, now) for m in messages)

    def reserve(self, queue: str, lease_s: float, max_deliveries: int,
                acks: Sequence[Delivery] = ()) -> Delivery | None:
        for done in acks:
            self.ack(done)
        now = time.time()
        with self._lock:
            msgs = self._msgs.get(queue, {})
            while True:
                ready = [m for m in msgs.values() if m.available_at <= now]
                if not ready:
                    return None
                m = min(ready, key=lambda m: (-m.priority, m.id))
                if m.deliveries >= max_deliveries:
                    del msgs[m.id]
                    self._add(queue + DEAD_SUFFIX, NewMessage(m.body), now)
                    continue
                m.deliveries += 1
                m.token = _token()
                m.available_at = now + lease_s
                return Delivery(queue, str(m.id), m.body, m.deliveries, m.enqueued_at, m.token)

    def _held(self, d: Delivery) -> _Mem | None:
        m = self._msgs.get(d.queue, {}).get(int(d.id))
        return m if m is not None and m.token == d.token else None

    def ack(self, delivery: Delivery) -> bool:
        with self._lock:
            if self._held(delivery) is None:
                return False
            del self._msgs[delivery.queue][int(delivery.id)]
            return True

    def nack(self, delivery: Delivery, max_deliveries: int) -> None:
        now = time.time()
        with self._lock:
            m = self._held(delivery)
            if m is None:
                return
            if m.deliveries >= max_deliveries:
                del self._msgs[delivery.queue][m.id]
                self._add(delivery.queue + DEAD_SUFFIX, NewMessage(m.body), now)
                return
            m.token, m.available_at = None, now

    def extend(self, deliveries: list[Delivery], lease_s: float) -> None:
        now = time.time()
        with self._lock:
            for d in deliveries:
                m = self._held(d)
                if m is not None:
                    m.available_at = now + lease_s

    def close(self, queue: str) -> None:
        with self._lock:
            self._msgs.setdefault(queue, {})
            self._closed.add(queue)

    def stats(self, queue: str) -> QueueStats:
        now = time.time()
        with self._lock:
            msgs = list(self._msgs.get(queue, {}).values())
        ready = sum(1 for m in msgs if m.available_at <= now)
        flying = sum(1 for m in msgs if m.token is not None and m.available_at > now)
        return QueueStats(queue, ready, len(msgs) - ready - flying, flying, queue in self._closed,
                          min((m.enqueued_at for m in msgs), default=None))

    def queues(self) -> list[QueueStats]:
        return [self.stats(q) for q in sorted(self._msgs)]

    def peek(self, queue: str, limit: int) -> list[Delivery]:
        with self._lock:
            msgs = sorted(self._msgs.get(queue, {}).values(), key=lambda m: (m.available_at > time.time(),
                                                                            -m.priority, m.id))
        return [Delivery(queue, str(m.id), m.body, m.deliveries, m.enqueued_at, "") for m in msgs[:limit]]

    def purge(self, queue: str) -> int:
        with self._lock:
            gone = len(self._msgs.pop(queue, {}))
            self._keys.pop(queue, None)
            self._closed.discard(queue)
            return gone


# -- SQLite -----------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    enqueued_at REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    token TEXT
);
CREATE INDEX IF NOT EXISTS queue_messages_next ON queue_messages (queue, priority DESC, id);
CREATE TABLE IF NOT EXISTS queue_keys (queue TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (queue, key))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, closed INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
"""


class SqliteQueueBackend(_OneAtATime):
    """Queues in one SQLite file (``KEEL_HOME/queues.db``), safe across processes and threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            self._db = self._connect()
        except (OSError, sqlite3.Error) as exc:
            from keel.errors import StoreError

            raise StoreError(f"cannot open the queue database {self.path}: {exc}; check that the folder is "
                             f"writable (or point KEEL_HOME / KEEL_QUEUE_URL elsewhere)") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 30000")
        with self._file_lock():
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _file_lock(self) -> "_FileLock":
        return _FileLock(self._lock_fd)

    def _write(self) -> "_Transaction":
        if os.getpid() != self._pid:  # forked: a connection must not cross a fork
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            self._db = self._connect()
        return _Transaction(self)

    def put(self, queue: str, messages: list[NewMessage]) -> int:
        now = time.time()
        added = 0
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
            for m in messages:
                if m.key is not None and db.execute("INSERT OR IGNORE INTO queue_keys VALUES (?, ?)",
                                                    (queue, m.key)).rowcount == 0:
                    continue
                db.execute("INSERT INTO queue_messages (queue, body, priority, available_at, enqueued_at) "
                           "VALUES (?, ?, ?, ?, ?)", (queue, m.body, m.priority, now + m.delay, now))
                added += 1
        return added

    def reserve(self, queue: str, lease_s: float, max_deliveries: int,
                acks: Sequence[Delivery] = ()) -> Delivery | None:
        with self._write() as db:
            if acks:
                db.executemany("DELETE FROM queue_messages WHERE id = ? AND token = ?",
                               [(int(d.id), d.token) for d in acks])
            while True:
                now = time.time()
                row = db.execute("SELECT id, body, deliveries, enqueued_at FROM queue_messages "
                                 "WHERE queue = ? AND available_at <= ? ORDER BY priority DESC, id LIMIT 1",
                                 (queue, now)).fetchone()
                if row is None:
                    return None
                mid, body, deliveries, enqueued_at = row
                if deliveries >= max_deliveries:
                    self._to_dead(db, queue, mid, now)
                    continue
                token = _token()
                db.execute("UPDATE queue_messages SET deliveries = deliveries + 1, token = ?, available_at = ? "
                           "WHERE id = ?", (token, now + lease_s, mid))
                return Delivery(queue, str(mid), body, deliveries + 1, enqueued_at, token)

    @staticmethod
    def _to_dead(db: sqlite3.Connection, queue: str, mid: int, now: float) -> None:
        dead = queue + DEAD_SUFFIX
        db.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (dead,))
        db.execute("INSERT INTO queue_messages (queue, body, priority, available_at, enqueued_at) "
                   "SELECT ?, body, 0, ?, ? FROM queue_messages WHERE id = ?", (dead, now, now, mid))
        db.execute("DELETE FROM queue_messages WHERE id = ?", (mid,))

    def ack(self, delivery: Delivery) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM queue_messages WHERE id = ? AND token = ?",
                              (int(delivery.id), delivery.token)).rowcount > 0

    def nack(self, delivery: Delivery, max_deliveries: int) -> None:
        with self._write() as db:
            row = db.execute("SELECT deliveries FROM queue_messages WHERE id = ? AND token = ?",
                             (int(delivery.id), delivery.token)).fetchone()
            if row is None:
                return
            if row[0] >= max_deliveries:
                self._to_dead(db, delivery.queue, int(delivery.id), time.time())
            else:
                db.execute("UPDATE queue_messages SET token = NULL, available_at = ? WHERE id = ?",
                           (time.time(), int(delivery.id)))

    def extend(self, deliveries: list[Delivery], lease_s: float) -> None:
        if not deliveries:
            return
        until = time.time() + lease_s
        with self._write() as db:
            db.executemany("UPDATE queue_messages SET available_at = ? WHERE id = ? AND token = ?",
                           [(until, int(d.id), d.token) for d in deliveries])

    def close(self, queue: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO queues (name, closed) VALUES (?, 1) "
                       "ON CONFLICT (name) DO UPDATE SET closed = 1", (queue,))

    def _read(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._write() as db:  # short, and it keeps one connection per thread of use
            return db.execute(sql, args).fetchall()

    def stats(self, queue: str) -> QueueStats:
        now = time.time()
        ready, delayed, flying, oldest = self._read(
            "SELECT coalesce(sum(available_at <= ?), 0), coalesce(sum(available_at > ? AND token IS NULL), 0), "
            "coalesce(sum(available_at > ? AND token IS NOT NULL), 0), min(enqueued_at) "
            "FROM queue_messages WHERE queue = ?", (now, now, now, queue))[0]
        closed = self._read("SELECT closed FROM queues WHERE name = ?", (queue,))
        return QueueStats(queue, int(ready), int(delayed), int(flying),  # type: ignore[call-overload]
                          bool(closed and closed[0][0]), oldest)  # type: ignore[arg-type]

    def queues(self) -> list[QueueStats]:
        names = [str(r[0]) for r in self._read("SELECT name FROM queues ORDER BY name", ())]
        return [self.stats(n) for n in names]

    def peek(self, queue: str, limit: int) -> list[Delivery]:
        rows = self._read("SELECT id, body, deliveries, enqueued_at FROM queue_messages WHERE queue = ? "
                          "ORDER BY available_at > ?, priority DESC, id LIMIT ?", (queue, time.time(), limit))
        return [Delivery(queue, str(r[0]), r[1], r[2], r[3], "") for r in rows]  # type: ignore[arg-type]

    def purge(self, queue: str) -> int:
        with self._write() as db:
            gone = db.execute("DELETE FROM queue_messages WHERE queue = ?", (queue,)).rowcount
            db.execute("DELETE FROM queue_keys WHERE queue = ?", (queue,))
            db.execute("DELETE FROM queues WHERE name = ?", (queue,))
            return int(gone)


class _FileLock:
    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)


class _Transaction:
    """``with backend._write() as db``: thread lock, file lock, BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, backend: SqliteQueueBackend):
        self.b = backend

    def __enter__(self) -> sqlite3.Connection:
        import fcntl

        self.b._lock.acquire()
        try:
            fcntl.flock(self.b._lock_fd, fcntl.LOCK_EX)
            self.b._db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            fcntl.flock(self.b._lock_fd, fcntl.LOCK_UN)
            self.b._lock.release()
            if isinstance(exc, sqlite3.Error):
                raise _store_error(self.b.path, exc) from None
            raise
        return self.b._db

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        import fcntl

        try:
            self.b._db.execute("ROLLBACK" if kind is not None else "COMMIT")
        except sqlite3.Error as failed:
            raise _store_error(self.b.path, failed) from None
        finally:
            fcntl.flock(self.b._lock_fd, fcntl.LOCK_UN)
            self.b._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise _store_error(self.b.path, exc) from None


def _store_error(path: Path, exc: sqlite3.Error) -> Exception:
    from keel.errors import StoreError

    return StoreError(f"queue database {path}: {exc}; check that the folder is writable and the disk not full "
                      f"(or point KEEL_HOME / KEEL_QUEUE_URL elsewhere)")


def open_backend(url: str | None, home: str | Path | None = None) -> QueueBackend:
    """The backend for a queue URL: ``redis://...``, ``sqlite:///path``, ``memory://``, or None
    for ``KEEL_HOME/queues.db``."""
    from keel.errors import UsageError

    if not url:
        from keel.settings import Settings

        base = Path(home) if home is not None else Settings.from_env().home
        return SqliteQueueBackend(base.absolute() / "queues.db")
    if url.startswith(("redis://", "rediss://", "unix://")):
        from keel.store.queues_redis import RedisQueueBackend

        return RedisQueueBackend(url)
    if url.startswith("sqlite:///"):
        return SqliteQueueBackend(url[len("sqlite:///"):] or "queues.db")
    if url == "memory://":
        return _shared_memory()
    raise UsageError(f"queue url {url!r}: expected redis://HOST:PORT/DB, sqlite:///PATH or memory:// "
                     f"(set it in keel.yaml under addons: queue: url, or in KEEL_QUEUE_URL)")


_MEMORY: MemoryQueueBackend | None = None


def _shared_memory() -> MemoryQueueBackend:
    global _MEMORY
    if _MEMORY is None:
        _MEMORY = MemoryQueueBackend()
    return _MEMORY
