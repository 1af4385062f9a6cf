"""The queue add-on: named queues that feed parallel job instances, at least once.

    q = current.queue("jobs")              # in a step or job; keel.queue("jobs") anywhere
    q.put({"url": u}, priority=1)          # also delay=SECONDS, key=... (a duplicate put is a no-op)
    q.close()                              # the producers are done
    for msg in q:                          # consumes until the queue is drained
        handle(msg.body)
        msg.ack()                          # or msg.nack(): delivered again at once

While a consumer holds a message, a heartbeat thread extends its lease, so a long message is
not delivered twice while its consumer lives; when the consumer dies the lease runs out after
``visibility_timeout`` seconds and the message is delivered to another. After
``max_deliveries`` deliveries a message goes to the queue ``NAME.dead``.

Settings come, in order, from the call (``current.queue("jobs", max_deliveries=3)``), the
environment (``KEEL_QUEUE_URL``, ``KEEL_QUEUE_VISIBILITY_TIMEOUT``, ``KEEL_QUEUE_MAX_DELIVERIES``;
a project run sets them from keel.yaml's ``addons: {queue: {...}}``), then the defaults.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from keel.errors import UsageError

if TYPE_CHECKING:
    from keel.store.queues import Delivery, QueueBackend, QueueStats

__all__ = ["Message", "Queue", "QueueSettings", "queue"]

_ENV = {"url": "KEEL_QUEUE_URL", "visibility_timeout": "KEEL_QUEUE_VISIBILITY_TIMEOUT",
        "max_deliveries": "KEEL_QUEUE_MAX_DELIVERIES"}


@dataclass(frozen=True)
class QueueSettings:
    """How a queue behaves. ``url`` None is SQLite in ``KEEL_HOME/queues.db``."""

    url: str | None = None
    visibility_timeout: float = 30.0
    max_deliveries: int = 5

    @classmethod
    def from_env(cls, **overrides: Any) -> "QueueSettings":
        unknown = sorted(set(overrides) - set(_ENV))
        if unknown:
            raise UsageError(f"queue setting(s) {', '.join(map(repr, unknown))} unknown; the settings are: "
                             f"{', '.join(_ENV)}")
        from keel.settings import Settings

        env = Settings.from_env()
        values: dict[str, Any] = {}
        for field in _ENV:
            if overrides.get(field) is not None:
                values[field] = overrides[field]
            elif getattr(env, f"queue_{field}"):
                values[field] = getattr(env, f"queue_{field}")
        try:
            settings = cls(url=values.get("url") or None,
                           visibility_timeout=float(values.get("visibility_timeout", cls.visibility_timeout)),
                           max_deliveries=int(values.get("max_deliveries", cls.max_deliveries)))
        except ValueError as exc:
            raise UsageError(f"bad queue setting ({exc}); visibility_timeout is seconds (a number) and "
                             f"max_deliveries a whole number (check KEEL_QUEUE_* and keel.yaml)") from None
        if settings.visibility_timeout <= 0 or settings.max_deliveries < 1:
            raise UsageError(f"queue settings: visibility_timeout must be > 0 and max_deliveries >= 1, got "
                             f"{settings.visibility_timeout} and {settings.max_deliveries}")
        return settings


class Message:
    """One delivery of a message: ``body`` is what was put; ``ack()`` or ``nack()`` it once."""

    __slots__ = ("body", "_delivery", "_queue", "_done")

    def __init__(self, body: Any, delivery: "Delivery", queue: "Queue"):
        self.body = body
        self._delivery = delivery
        self._queue = queue
        self._done = False

    @property
    def id(self) -> str:
        return self._delivery.id

    @property
    def deliveries(self) -> int:
        """How many times this message has been delivered, this time included (1 the first time)."""
        return self._delivery.deliveries

    @property
    def enqueued_at(self) -> float:
        return self._delivery.enqueued_at

    def ack(self) -> bool:
        """The message is done. False when its lease had run out and it went to another consumer."""
        if self._done:
            return False
        self._done = True
        return self._queue._settle(self._delivery, ack=True)

    def nack(self) -> None:
        """Give the message back: it is delivered again at once (or goes to ``NAME.dead``)."""
        if not self._done:
            self._done = True
            self._queue._settle(self._delivery, ack=False)

    def __repr__(self) -> str:
        return f"Message(id={self.id}, deliveries={self.deliveries}, body={self.body!r})"


_BACKENDS: dict[tuple[int, str | None, str], "QueueBackend"] = {}
_BACKENDS_LOCK = threading.Lock()


def _backend(url: str | None) -> "QueueBackend":
    from keel.store.queues import open_backend

    from keel.settings import Settings

    home = str(Settings.from_env().home)
    key = (os.getpid(), url, home)
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(key)
        if backend is None:
            backend = _BACKENDS[key] = open_backend(url)
        return backend


class Queue:
    """A named queue. Cheap to create; every ``Queue`` of one name shares the messages."""

    def __init__(self, name: str, settings: QueueSettings | None = None, backend: "QueueBackend | None" = None):
        if not name or not isinstance(name, str) or any(c.isspace() for c in name):
            raise UsageError(f"queue name {name!r}: give a non-empty name without spaces, e.g. 'jobs'")
        self.name = name
        self.settings = settings or QueueSettings.from_env()
        self.backend = backend if backend is not None else _backend(self.settings.url)
        self._held: dict[str, "Delivery"] = {}
        self._acks: list["Delivery"] = []  # acked while iterating, sent with the next reserve
        self._ready: deque["Delivery"] = deque()  # prefetched while iterating, leased, not handed out
        self._leased_at = 0.0   # when the leases of what is held were last taken or extended (monotonic)
        self._deferring = 0
        self._lock = threading.Lock()
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_depth_log = 0.0

    # -- producing -------------------------------------------------------------------------
    def put(self, obj: Any, *, delay: float = 0, priority: int = 0, key: str | None = None) -> bool:
        """Add one message; False when ``key`` was used before (the put is then a no-op)."""
        return self.put_many([obj], delay=delay, priority=priority, keys=None if key is None else [key]) == 1

    def put_many(self, objs: Iterable[Any], *, delay: float = 0, priority: int = 0,
                 keys: Iterable[str | None] | None = None) -> int:
        """Add many messages in one transaction; returns how many were added (keys seen before are not)."""
        from keel.store.queues import NewMessage

        if delay < 0:
            raise UsageError(f"queue {self.name!r}: delay must be >= 0 seconds, got {delay}")
        bodies = [pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL) for o in objs]
        key_list = list(keys) if keys is not None else [None] * len(bodies)
        if len(key_list) != len(bodies):
            raise UsageError(f"queue {self.name!r}: put_many got {len(bodies)} messages but {len(key_list)} keys")
        return self.backend.put(self.name, [NewMessage(b, float(delay), int(priority), k)
                                            for b, k in zip(bodies, key_list)])

    def close(self) -> None:
        """The producers are done: consumers that wait for producers stop once the queue is drained."""
        self.backend.close(self.name)

    # -- consuming -------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Message | None:
        """The next message, waiting up to ``timeout`` seconds (None: until one comes or the queue
        is closed and drained). None when there is none."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.002
        while True:
            msg = self._try_get()
            if msg is not None:
                return msg
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if timeout is None:
                stats = self.stats()
                if stats.closed and stats.empty:
                    return None
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 2, 0.1)

    def _try_get(self) -> Message | None:
        s = self.settings
        with self._lock:
            acks, self._acks = self._acks, []
            for done in acks:
                self._held.pop(done.id, None)
            stale: list["Delivery"] = []
            if self._ready and time.monotonic() - self._leased_at > s.visibility_timeout / 2:
                # the heartbeat is late (a starved process): these leases may be lost by now,
                # so they go back rather than risk handing out a message another consumer has
                stale, self._ready = list(self._ready), deque()
                for d in stale:
                    self._held.pop(d.id, None)
            delivery = self._ready.popleft() if self._ready else None
        if stale:
            self.backend.release(stale)
        if delivery is not None:
            # the acks go out before the next message is handed out (a kill between handling
            # and acking duplicates one message at most), without waiting for their answer
            self.backend.send_acks(acks)
        else:
            count = self.backend.prefetch if self._deferring else 1   # get() takes only what it returns
            asked = time.monotonic()
            got = self.backend.reserve_many(self.name, s.visibility_timeout, s.max_deliveries, acks, count)
            if not got:
                return None
            delivery = got[0]
            with self._lock:
                self._leased_at = asked
                for d in got:
                    self._held[d.id] = d   # prefetched ones too: the heartbeat keeps their leases
                self._ready.extend(got[1:])
        self._ensure_heartbeat()
        self._record_metrics(delivery)
        return Message(pickle.loads(delivery.body), delivery, self)

    def consume(self, *, until_closed: bool = False) -> Iterator[Message]:
        """Messages until the queue is drained: nothing ready, delayed or held by any consumer
        (a message held by a consumer that dies comes back). With ``until_closed``, also wait
        until the producers have closed the queue.

        While iterating, ``msg.ack()`` is sent with the request for the next message (one
        round trip per message, not two), or by the heartbeat, or when iteration ends; until
        then the message stays leased to this consumer, so it is not delivered elsewhere.
        A consumer killed in between gets that message delivered again (at least once).
        A backend with ``prefetch`` > 1 (Redis) hands out up to that many messages per request,
        leased and heartbeated as held; the acks then go out, unanswered, before each next
        message, and what was not handed out when iteration ends is given back."""
        pause = 0.002
        self._deferring += 1
        try:
            while True:
                msg = self._try_get()
                if msg is not None:
                    pause = 0.002
                    yield msg
                    continue
                stats = self.stats()
                if stats.empty and (stats.closed or not until_closed):
                    return
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
        finally:
            self._deferring -= 1
            self.flush()

    def flush(self, *, release: bool = True) -> None:
        """Send the acknowledgements that iteration holds back (see ``consume``) now, and give
        back the messages it prefetched but did not hand out."""
        with self._lock:
            acks, self._acks = self._acks, []
            for done in acks:
                self._held.pop(done.id, None)
            unused: list["Delivery"] = []
            if release:
                unused, self._ready = list(self._ready), deque()
                for d in unused:
                    self._held.pop(d.id, None)
        for done in acks:
            self.backend.ack(done)
        if unused:
            self.backend.release(unused)

    def __iter__(self) -> Iterator[Message]:
        return self.consume()

    def stats(self) -> "QueueStats":
        return self.backend.stats(self.name)

    def __len__(self) -> int:
        return self.stats().depth

    def dead(self) -> "Queue":
        """The queue of messages that were delivered ``max_deliveries`` times: ``NAME.dead``."""
        from keel.store.queues import DEAD_SUFFIX

        return Queue(self.name + DEAD_SUFFIX, self.settings, self.backend)

    # -- internals -------------------------------------------------------------------------
    def _settle(self, delivery: "Delivery", *, ack: bool) -> bool:
        if ack and self._deferring:
            with self._lock:
                self._acks.append(delivery)
            return True
        with self._lock:
            self._held.pop(delivery.id, None)
        if ack:
            return self.backend.ack(delivery)
        self.backend.nack(delivery, self.settings.max_deliveries)
        return True

    def _ensure_heartbeat(self) -> None:
        if self._beat is not None and self._beat.is_alive():
            return
        self._stop.clear()
        self._beat = threading.Thread(target=_heartbeat, args=(weakref.ref(self), self._stop),
                                      name=f"keel-queue-heartbeat-{self.name}", daemon=True)
        self._beat.start()

    def _beat_once(self) -> bool:
        if self._acks:
            self.flush(release=False)
        with self._lock:
            held = list(self._held.values())
        if held:
            asked = time.monotonic()
            self.backend.extend(held, self.settings.visibility_timeout)
            with self._lock:
                self._leased_at = asked
        return bool(held)

    def _record_metrics(self, delivery: "Delivery") -> None:
        """``queue.lag_s`` for each message and ``queue.depth`` at most once a second, in a task."""
        module = sys.modules.get("keel.runtime.current")
        if module is None:
            if not os.environ.get("KEEL_METRICS_PATH"):
                return  # not in a task: do not pay for importing the runtime
            import keel.runtime.current

            module = keel.runtime.current
        current = module.current
        if current.__dict__.get("_spool") is None:
            return
        current.log_metric("queue.lag_s", max(0.0, time.time() - delivery.enqueued_at))
        now = time.monotonic()
        if now - self._last_depth_log >= 1.0:
            self._last_depth_log = now
            current.log_metric("queue.depth", self.stats().depth)

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, url={self.settings.url or 'sqlite (KEEL_HOME/queues.db)'})"

    def __del__(self) -> None:
        self._stop.set()


def _heartbeat(ref: "weakref.ReferenceType[Queue]", stop: threading.Event) -> None:
    """Extend the leases of the messages a Queue holds, a third of the visibility timeout apart.
    Ends when the Queue is gone or holds nothing."""
    while True:
        q = ref()
        if q is None:
            return
        interval = q.settings.visibility_timeout / 3
        del q
        if stop.wait(interval):
            return
        q = ref()
        if q is None:
            return
        try:
            q._beat_once()
        except Exception:  # a failed beat is retried at the next one; the lease has slack for two
            pass
        del q


_QUEUES: dict[tuple[int, str, QueueSettings, str], Queue] = {}


def queue(name: str, **settings: Any) -> Queue:
    """A named queue outside a task (``keel.queue("jobs")``); settings as for ``current.queue``.
    The same name and settings give the same object (one heartbeat thread per queue)."""
    resolved = QueueSettings.from_env(**settings)
    from keel.settings import Settings

    key = (os.getpid(), name, resolved, str(Settings.from_env().home))
    with _BACKENDS_LOCK:
        found = _QUEUES.get(key)
    if found is None:
        found = Queue(name, resolved)
        with _BACKENDS_LOCK:
            found = _QUEUES.setdefault(key, found)
    return found
