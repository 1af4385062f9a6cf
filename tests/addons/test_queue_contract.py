"""One contract for every queue backend: the in-memory fake, SQLite and Redis Streams.

Each test gets ``connect()``: a new connection to the same queues, as a second consumer
process would have (the fake shares one object: its consumers differ by lease token).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from keel.addons.queue import Queue, QueueSettings
from keel.store.queues import MemoryQueueBackend, NewMessage, QueueBackend, SqliteQueueBackend

Connect = Callable[[], QueueBackend]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Connect:
    if request.param == "memory":
        shared = MemoryQueueBackend()
        return lambda: shared
    if request.param == "sqlite":
        return lambda: SqliteQueueBackend(tmp_path / "queues.db")
    url = request.getfixturevalue("fresh_redis")
    from keel.store.queues_redis import RedisQueueBackend

    return lambda: RedisQueueBackend(url)


def _queue(connect: Connect, name: str = "jobs", **settings: float) -> Queue:
    return Queue(name, QueueSettings(**settings), connect())  # type: ignore[arg-type]


def _poll(fn: Callable[[], object], seconds: float = 10) -> object:
    deadline = time.monotonic() + seconds
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def test_a_put_message_comes_back_with_its_body_and_ack_removes_it(connect: Connect) -> None:
    q = _queue(connect)
    assert q.put({"n": 1, "tags": ["a"]})
    msg = q.get(timeout=1)
    assert msg is not None and msg.body == {"n": 1, "tags": ["a"]} and msg.deliveries == 1
    assert msg.ack()
    assert q.stats().empty
    assert q.get(timeout=0) is None


def test_get_on_an_empty_queue_returns_none_after_the_timeout(connect: Connect) -> None:
    started = time.monotonic()
    assert _queue(connect).get(timeout=0.2) is None
    assert time.monotonic() - started >= 0.2


def test_higher_priority_first_then_oldest_first(connect: Connect) -> None:
    q = _queue(connect)
    q.put_many(["low1", "low2"])
    q.put("high", priority=5)
    q.put("neg", priority=-1)
    got = []
    for msg in q:
        got.append(msg.body)
        msg.ack()
    assert got == ["high", "low1", "low2", "neg"]


def test_a_delayed_message_is_invisible_until_its_delay_passed(connect: Connect) -> None:
    q = _queue(connect)
    delay = 1.5
    put_at = time.time()
    q.put("later", delay=delay)
    early, stats = q.get(timeout=0), q.stats()
    if time.time() - put_at < delay:          # a loaded machine may have slept past the delay
        assert early is None
        assert stats.delayed == 1
    msg = early or q.get(timeout=30)
    assert msg is not None and msg.body == "later"
    assert time.time() - put_at >= delay


def test_a_duplicate_key_is_a_no_op(connect: Connect) -> None:
    q = _queue(connect)
    assert q.put("a", key="k1") is True
    assert q.put("b", key="k1") is False
    assert q.put_many(["c", "d", "e"], keys=["k1", "k2", None]) == 2
    bodies = []
    for msg in q:
        bodies.append(msg.body)
        msg.ack()
    assert sorted(bodies) == ["a", "d", "e"]
    assert q.put("f", key="k1") is False  # a key stays used after its message was acked


def test_a_nacked_message_is_delivered_again_at_once(connect: Connect) -> None:
    q = _queue(connect, visibility_timeout=60)
    q.put("x")
    first = q.get(timeout=1)
    assert first is not None
    first.nack()
    again = q.get(timeout=0)
    assert again is not None and again.body == "x" and again.deliveries == 2


def test_a_message_whose_lease_ran_out_goes_to_another_consumer(connect: Connect) -> None:
    a, b = connect(), connect()
    a.put("jobs", [NewMessage(b"payload")])
    held = a.reserve("jobs", 1.0, 5)  # long enough that b's first look comes before it runs out, even when loaded
    assert held is not None
    assert b.reserve("jobs", 1.0, 5) is None  # leased to a
    taken = _poll(lambda: b.reserve("jobs", 1.0, 5), 30)  # consumers of a queue share its visibility timeout
    assert taken is not None and taken.body == b"payload" and taken.deliveries == 2  # type: ignore[union-attr]
    assert a.ack(held) is False  # a lost the lease: its ack changes nothing
    assert b.ack(taken) is True  # type: ignore[arg-type]
    assert a.stats("jobs").empty


def test_the_heartbeat_keeps_a_live_consumers_lease(connect: Connect) -> None:
    # a visibility timeout of 1 s: the heartbeat (every third of it) may be late by most of a
    # second on a loaded machine without losing the lease
    mine = _queue(connect, visibility_timeout=1.0)
    other = _queue(connect, visibility_timeout=1.0)
    mine.put("long job")
    msg = mine.get(timeout=1)
    assert msg is not None
    deadline = time.monotonic() + 3.0  # three visibility timeouts: without heartbeats it would move
    while time.monotonic() < deadline:
        assert other.get(timeout=0) is None
        time.sleep(0.05)
    assert msg.ack()


def test_after_max_deliveries_a_message_goes_to_the_dead_queue(connect: Connect) -> None:
    q = _queue(connect, max_deliveries=3)
    q.put("poison")
    for attempt in (1, 2, 3):
        msg = q.get(timeout=1)
        assert msg is not None and msg.deliveries == attempt
        msg.nack()
    assert q.get(timeout=0) is None
    dead = q.dead().get(timeout=1)
    assert dead is not None and dead.body == "poison"
    assert q.dead().name == "jobs.dead"


def test_expired_leases_count_towards_max_deliveries(connect: Connect) -> None:
    backend = connect()
    backend.put("jobs", [NewMessage(b"crashy")])
    assert backend.reserve("jobs", 0.05, 2) is not None  # consumer dies
    assert _poll(lambda: backend.reserve("jobs", 0.05, 2)) is not None  # the second dies too
    # the next consumer to ask finds it expired a second time: it goes to the dead queue
    assert _poll(lambda: backend.reserve("jobs", 0.05, 2) is None and backend.stats("jobs.dead").ready, 5) == 1
    assert backend.stats("jobs").empty


def test_iteration_waits_for_close_when_asked(connect: Connect) -> None:
    q = _queue(connect)
    q.put("one")
    it = q.consume(until_closed=True)
    msg = next(it)
    msg.ack()
    q.close()
    assert list(it) == []
    assert q.stats().closed


def test_get_without_timeout_returns_none_once_closed_and_drained(connect: Connect) -> None:
    q = _queue(connect)
    q.close()
    assert q.get() is None


def test_list_peek_and_purge(connect: Connect) -> None:
    q = _queue(connect, name="jobs")
    _queue(connect, name="other").put("o")
    q.put_many(["a", "b", "c"])
    q.put("first", priority=1)
    names = {s.name: s for s in connect().queues()}
    assert names["jobs"].depth == 4 and names["other"].depth == 1
    assert [pickle.loads(d.body) for d in connect().peek("jobs", 2)] == ["first", "a"]
    assert connect().purge("jobs") == 4
    assert q.get(timeout=0) is None
    assert "jobs" not in {s.name for s in connect().queues()}


def test_a_consumer_that_stops_iterating_gives_back_what_it_prefetched_uncounted(connect: Connect) -> None:
    first, second = _queue(connect), _queue(connect)
    first.put_many(range(10))
    for msg in first:          # takes one (a prefetching backend leases more), handles it, stops
        msg.ack()
        break
    rest = []
    while (msg := second.get(timeout=0)) is not None:   # at once, not after the visibility timeout
        rest.append((msg.body, msg.deliveries))
        msg.ack()
    assert sorted(rest) == [(i, 1) for i in range(1, 10)]
    assert second.stats().empty


def test_get_leases_only_the_message_it_returns(connect: Connect) -> None:
    first, second = _queue(connect), _queue(connect)
    first.put_many(["a", "b"])
    got = first.get(timeout=1)
    other = second.get(timeout=1)
    assert got is not None and other is not None and {got.body, other.body} == {"a", "b"}


def test_acks_sent_while_iterating_reach_the_backend_before_it_ends(connect: Connect) -> None:
    q, watcher = _queue(connect), _queue(connect)
    q.put_many(range(5))
    seen = []
    for msg in q:
        seen.append(msg.body)
        msg.ack()
        if len(seen) == 3:     # two acked for good, the third sent with the next message
            assert _poll(lambda: watcher.stats().ready + watcher.stats().in_flight == 3)
    assert sorted(seen) == list(range(5)) and watcher.stats().empty
