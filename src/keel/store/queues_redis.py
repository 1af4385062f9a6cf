"""The Redis backend of the queue add-on: Redis Streams with a consumer group.

Keys of queue NAME (prefix ``keel:q:NAME``):
- ``:s:P``       a stream per priority level P, each with the consumer group ``keel``;
- ``:prios``     a sorted set of the levels in use (highest is read first);
- ``:delayed``   a sorted set of delayed messages scored by when they become visible; they
                 move to their stream on the next ``reserve`` after that time;
- ``:keys``      idempotency keys seen; ``:closed`` set when the producers are done.
``keel:queues`` is the set of queue names.

A delivery is a stream entry in the group's pending list, owned by this backend's consumer
name. Its idle time is the lease: the heartbeat resets it (``XCLAIM ... JUSTID``), and a
consumer finds entries idle longer than the visibility timeout with ``XAUTOCLAIM`` and takes
them over. Each operation is one Lua script, so it is atomic and one round trip.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from keel.store.queues import DEAD_SUFFIX, Delivery, NewMessage, QueueStats

_LIB = """
local function ensure_level(p, prio)
  local s = p .. ':s:' .. prio
  if redis.call('ZADD', p .. ':prios', 'NX', prio, prio) == 1 then
    redis.pcall('XGROUP', 'CREATE', s, 'keel', '0', 'MKSTREAM')
  end
  return s
end
local function to_dead(name, body, now)
  local dp = 'keel:q:' .. name .. '.dead'
  redis.call('SADD', 'keel:queues', name .. '.dead')
  redis.call('XADD', ensure_level(dp, 0), '*', 'b', body, 't', now, 'd', 0)
end
local function owned(s, id, consumer)
  local pe = redis.call('XPENDING', s, 'keel', id, id, 1, consumer)
  if #pe == 0 then return nil end
  return pe[1][4]
end
"""

_PUT = _LIB + """
local name, now = ARGV[1], tonumber(ARGV[2])
local p = 'keel:q:' .. name
redis.call('SADD', 'keel:queues', name)
local added, i = 0, 3
while i <= #ARGV do
  local prio, delay, key, body = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  if key == '' or redis.call('SADD', p .. ':keys', key) == 1 then
    added = added + 1
    if delay > 0 then
      redis.call('ZADD', p .. ':delayed', now + delay, cmsgpack.pack(prio, now, body, redis.call('INCR', p .. ':seq')))
    else
      redis.call('XADD', ensure_level(p, prio), '*', 'b', body, 't', now, 'd', 0)
    end
  end
end
return added
"""

_RESERVE = _LIB + """
local name, now, consumer = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local idle_ms, max_deliveries, want = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local p = 'keel:q:' .. name
for i = 7, #ARGV, 2 do  -- acks first: stream, id
  if owned(ARGV[i], ARGV[i + 1], consumer) then
    redis.call('XACK', ARGV[i], 'keel', ARGV[i + 1])
    redis.call('XDEL', ARGV[i], ARGV[i + 1])
  end
end
local due = redis.call('ZRANGEBYSCORE', p .. ':delayed', '-inf', now, 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  local prio, enq, body = cmsgpack.unpack(m)
  redis.call('XADD', ensure_level(p, prio), '*', 'b', body, 't', enq, 'd', 0)
  redis.call('ZREM', p .. ':delayed', m)
end
local function fields(entry)
  local f = {}
  for j = 1, #entry[2], 2 do f[entry[2][j]] = entry[2][j + 1] end
  return f
end
local out = {}
local levels = redis.call('ZREVRANGE', p .. ':prios', 0, -1)
for _, prio in ipairs(levels) do
  local s = p .. ':s:' .. prio
  while #out < want do
    -- first what a dead consumer left (idle past the lease), then new entries
    local entries, claimed = {}, redis.call('XAUTOCLAIM', s, 'keel', consumer, idle_ms, '0-0', 'COUNT', want - #out)
    for _, e in ipairs(claimed[2]) do if e then entries[#entries + 1] = e end end
    local reclaimed = #entries > 0
    if not reclaimed then
      local got = redis.call('XREADGROUP', 'GROUP', 'keel', consumer, 'COUNT', want - #out, 'STREAMS', s, '>')
      if got and #got > 0 then entries = got[1][2] end
    end
    if #entries == 0 then break end
    for _, entry in ipairs(entries) do
      local f = fields(entry)
      local count = reclaimed and (owned(s, entry[1], consumer) or 1) or 1
      local total = tonumber(f['d']) + count
      if total > max_deliveries then
        to_dead(name, f['b'], now)
        redis.call('XACK', s, 'keel', entry[1])
        redis.call('XDEL', s, entry[1])
      else
        out[#out + 1] = {prio .. '/' .. entry[1], f['b'], total, f['t']}
      end
    end
  end
  if #out >= want then break end
end
return out
"""

_ACKS = _LIB + """
local consumer, n = ARGV[1], 0
for i = 2, #ARGV, 2 do
  if owned(ARGV[i], ARGV[i + 1], consumer) then
    redis.call('XACK', ARGV[i], 'keel', ARGV[i + 1])
    redis.call('XDEL', ARGV[i], ARGV[i + 1])
    n = n + 1
  end
end
return n
"""

_RELEASE = _LIB + """
local consumer = ARGV[1]
for i = 2, #ARGV, 3 do  -- stream, id, deliveries before this one: back at the tail, not counted
  local s, id = ARGV[i], ARGV[i + 1]
  if owned(s, id, consumer) then
    local e = redis.call('XRANGE', s, id, id)[1]
    if e then
      local f = {}
      for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
      redis.call('XADD', s, '*', 'b', f['b'], 't', f['t'], 'd', ARGV[i + 2])
    end
    redis.call('XACK', s, 'keel', id)
    redis.call('XDEL', s, id)
  end
end
return 1
"""

_ACK = _LIB + """
local s, id, consumer = KEYS[1], ARGV[1], ARGV[2]
if not owned(s, id, consumer) then return 0 end
redis.call('XACK', s, 'keel', id)
redis.call('XDEL', s, id)
return 1
"""

_NACK = _LIB + """
local s, id, consumer, name = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local max_deliveries, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local count = owned(s, id, consumer)
if not count then return 0 end
local e = redis.call('XRANGE', s, id, id)[1]
local f = {}
for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
local total = tonumber(f['d']) + count
if total >= max_deliveries then
  to_dead(name, f['b'], now)
else
  redis.call('XADD', s, '*', 'b', f['b'], 't', f['t'], 'd', total)
end
redis.call('XACK', s, 'keel', id)
redis.call('XDEL', s, id)
return 1
"""

_EXTEND = _LIB + """
local consumer = ARGV[1]
for i = 1, #KEYS do
  local id = ARGV[i + 1]
  if owned(KEYS[i], id, consumer) then
    redis.call('XCLAIM', KEYS[i], 'keel', consumer, 0, id, 'JUSTID')
  end
end
return 1
"""

_STATS = """
local p, now = 'keel:q:' .. ARGV[1], tonumber(ARGV[2])
local total, flying, oldest = 0, 0, false
for _, prio in ipairs(redis.call('ZRANGE', p .. ':prios', 0, -1)) do
  local s = p .. ':s:' .. prio
  total = total + redis.call('XLEN', s)
  local summary = redis.pcall('XPENDING', s, 'keel')
  if type(summary) == 'table' and summary[1] then flying = flying + summary[1] end
  local first = redis.call('XRANGE', s, '-', '+', 'COUNT', 1)[1]
  if first then
    for j = 1, #first[2], 2 do
      if first[2][j] == 't' then
        local t = tonumber(first[2][j + 1])
        if not oldest or t < oldest then oldest = t end
      end
    end
  end
end
local due = redis.call('ZCOUNT', p .. ':delayed', '-inf', now)
local later = redis.call('ZCARD', p .. ':delayed') - due
local closed = redis.call('EXISTS', p .. ':closed')
return {total - flying + due, later, flying, closed, tostring(oldest or '')}
"""


class RedisQueueBackend:
    """Queues in Redis Streams (``redis://host:port/db``); every consumer process is one group consumer."""

    def __init__(self, url: str):
        try:
            import redis
        except ImportError:
            from keel.errors import UsageError

            raise UsageError("the queue url is redis://... but the redis package is missing: "
                             "pip install 'keel[queue]'") from None
        self.url = url
        # Any: redis-py types replies as bytes | str (decode_responses either way); ours are bytes
        self.client: Any = redis.Redis.from_url(url)
        self.consumer = uuid.uuid4().hex
        self._scripts = {name: self.client.register_script(src) for name, src in
                         (("put", _PUT), ("reserve", _RESERVE), ("ack", _ACK), ("acks", _ACKS), ("nack", _NACK),
                          ("release", _RELEASE), ("extend", _EXTEND), ("stats", _STATS))}
        # acks sent while a consumer hands out prefetched messages: written on a connection of
        # their own, their answers read before the next call that waits for one
        self._ack_lock = threading.Lock()
        self._ack_conn: Any = None
        self._unread: list[list[Any]] = []    # the args of each ack batch whose answer is unread

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        import redis

        try:
            yield
        except redis.ConnectionError as exc:
            from keel.errors import StoreError

            raise StoreError(f"queue backend {self.url}: cannot reach Redis ({exc}); is redis-server running "
                             f"there? Check the url in keel.yaml (addons: queue: url) or KEEL_QUEUE_URL") from None

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with self._reaching():
            return self._scripts[name](keys=keys, args=args)

    @staticmethod
    def _stream(queue: str, delivery_id: str) -> tuple[str, str]:
        prio, sid = delivery_id.split("/", 1)
        return f"keel:q:{queue}:s:{prio}", sid

    def put(self, queue: str, messages: list[NewMessage]) -> int:
        args: list[Any] = [queue, time.time()]
        for m in messages:
            args += [int(m.priority), float(m.delay), m.key or "", m.body]
        return int(self._run("put", [], args))

    prefetch = 32

    def reserve(self, queue: str, lease_s: float, max_deliveries: int,
                acks: Sequence[Delivery] = ()) -> Delivery | None:
        got = self.reserve_many(queue, lease_s, max_deliveries, acks, 1)
        return got[0] if got else None

    def reserve_many(self, queue: str, lease_s: float, max_deliveries: int, acks: Sequence[Delivery] = (),
                     count: int = 1) -> list[Delivery]:
        """Up to ``count`` messages in one script (XAUTOCLAIM/XREADGROUP ``COUNT``), acks first."""
        self._read_acks()
        args: list[Any] = [queue, time.time(), self.consumer, int(lease_s * 1000), max_deliveries, max(1, count)]
        for d in acks:
            args += self._stream(d.queue, d.id)
        got = self._run("reserve", [], args)
        return [Delivery(queue, did.decode(), body, int(n), float(enqueued), self.consumer)
                for did, body, n, enqueued in got or ()]

    def send_acks(self, acks: Sequence[Delivery]) -> None:
        """Write one EVALSHA of the acks and go on: the answer is read by the next call that
        waits (a consumer handing out prefetched messages pays no round trip per ack). The
        command is in Redis' socket before this returns, so a consumer killed afterwards has
        still acknowledged them."""
        if not acks:
            return
        args: list[Any] = [self.consumer]
        for d in acks:
            args += self._stream(d.queue, d.id)
        with self._ack_lock, self._reaching(), self._ack_connection_guard():
            if self._ack_conn is None:
                self.client.script_load(_ACKS)
                try:
                    self._ack_conn = self.client.connection_pool.get_connection()
                except TypeError:   # redis-py before 5.3 wants a command name
                    self._ack_conn = self.client.connection_pool.get_connection("EVALSHA")
            self._ack_conn.send_command("EVALSHA", self._scripts["acks"].sha, 0, *args)
            self._unread.append(args)
            if len(self._unread) >= 256:
                self._read_acks_locked()

    def _read_acks(self) -> None:
        if self._unread:
            with self._ack_lock, self._reaching(), self._ack_connection_guard():
                self._read_acks_locked()

    @contextmanager
    def _ack_connection_guard(self) -> Iterator[None]:
        """A broken ack connection is dropped with its unread answers (those messages come back
        after their lease: at least once) and opened afresh next time."""
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError):
            if self._ack_conn is not None:
                self._ack_conn.disconnect()
            self._unread = []
            raise

    def _read_acks_locked(self) -> None:
        import redis

        unread, self._unread = self._unread, []
        for args in unread:
            try:
                self._ack_conn.read_response()
            except redis.exceptions.NoScriptError:   # Redis restarted meanwhile: send them again
                self._scripts["acks"](keys=[], args=args)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        self._read_acks()
        args: list[Any] = [self.consumer]
        for d in deliveries:
            args += [*self._stream(d.queue, d.id), d.deliveries - 1]
        self._run("release", [], args)

    def ack(self, delivery: Delivery) -> bool:
        self._read_acks()
        stream, sid = self._stream(delivery.queue, delivery.id)
        return bool(self._run("ack", [stream], [sid, delivery.token]))

    def nack(self, delivery: Delivery, max_deliveries: int) -> None:
        self._read_acks()
        stream, sid = self._stream(delivery.queue, delivery.id)
        self._run("nack", [stream], [sid, delivery.token, delivery.queue, max_deliveries, time.time()])

    def extend(self, deliveries: list[Delivery], lease_s: float) -> None:
        if not deliveries:
            return
        pairs = [self._stream(d.queue, d.id) for d in deliveries]
        self._run("extend", [s for s, _ in pairs], [self.consumer] + [sid for _, sid in pairs])

    def close(self, queue: str) -> None:
        with self._reaching():
            self.client.sadd("keel:queues", queue)
            self.client.set(f"keel:q:{queue}:closed", 1)

    def stats(self, queue: str) -> QueueStats:
        self._read_acks()   # what this consumer acked counts as gone
        ready, delayed, flying, closed, oldest = self._run("stats", [], [queue, time.time()])
        return QueueStats(queue, int(ready), int(delayed), int(flying), bool(closed),
                          float(oldest) if oldest else None)

    def queues(self) -> list[QueueStats]:
        with self._reaching():
            names = sorted(n.decode() for n in self.client.smembers("keel:queues"))
            return [self.stats(n) for n in names]

    def peek(self, queue: str, limit: int) -> list[Delivery]:
        with self._reaching():
            out: list[Delivery] = []
            for prio in self.client.zrevrange(f"keel:q:{queue}:prios", 0, -1):
                level = prio.decode()
                for sid, f in self.client.xrange(f"keel:q:{queue}:s:{level}", count=limit - len(out)):
                    out.append(Delivery(queue, f"{level}/{sid.decode()}", f[b"b"], int(f[b"d"]), float(f[b"t"]), ""))
                if len(out) >= limit:
                    break
            return out

    def purge(self, queue: str) -> int:
        with self._reaching():
            p = f"keel:q:{queue}"
            levels = [x.decode() for x in self.client.zrange(f"{p}:prios", 0, -1)]
            gone = sum(int(self.client.xlen(f"{p}:s:{lv}")) for lv in levels) + int(self.client.zcard(f"{p}:delayed"))
            self.client.delete(*[f"{p}:s:{lv}" for lv in levels], f"{p}:prios", f"{p}:delayed", f"{p}:keys",
                               f"{p}:closed", f"{p}:seq")
            self.client.srem("keel:queues", queue)
            return gone


__all__ = ["DEAD_SUFFIX", "RedisQueueBackend"]
