"""Step caching: reuse an earlier task's outputs when nothing its result depends on changed.

The scheduler asks :class:`StepCache` two things per task of a cached step: its key (before
it launches: code fingerprint, decorator settings, parameters, input artifact hashes, the
split's own item, ``@cache(key=..., version=...)``) and whether an intact earlier result has
that key. A hit is taken by reference like a resumed task (no bytes are copied); a miss runs
and, when it succeeds, becomes an entry that later runs can hit. Files a task opened for
reading (recorded by an audit hook in the task) are re-hashed on lookup: a changed file is a
miss.

Which steps are cached: ``@cache`` steps, or every step with ``run --cache``; ``run
--no-cache`` or ``KEEL_CACHE=off`` turn it off; ``@cache(behavior="recompute")`` always runs
(and records a fresh entry), ``@cache(behavior="disable")`` never caches.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import xxhash

from keel.errors import Unfingerprintable
from keel.runtime.fingerprint import combine, step_fingerprint, value_digest
from keel.settings import Settings
from keel.store.cache import CacheEntry, CacheStore, Claim, TaskKey

#: Entries of the flow read in one query when a run first looks one up; a key not among them is
#: looked up on its own (an entry made since, or an older one beyond this many).
PREFETCH_ENTRIES = 5000

#: How long a claim by a run whose scheduler is gone is honoured before another run takes it.
CLAIM_STALE_SECONDS = 30.0


@dataclass(frozen=True)
class CacheKey:
    """A task's cache key with its named parts; ``reason`` says why it cannot be cached."""

    key: str
    parts: dict[str, str]
    reason: str | None = None

    @property
    def cacheable(self) -> bool:
        return self.reason is None


@dataclass
class CacheSettings:
    mode: str = "auto"           # "auto": @cache steps; "all": every step (run --cache); "off"

    @classmethod
    def resolve(cls, cli: bool | None) -> "CacheSettings":
        """``cli`` is True for --cache, False for --no-cache, None when neither was given."""
        if cli is False or not Settings.from_env().cache:
            return cls("off")
        return cls("all" if cli else "auto")


@dataclass
class _FileDigests:
    seen: dict[tuple[str, int, int], str] = field(default_factory=dict)

    def digest(self, path: str) -> str | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        memo = (path, st.st_mtime_ns, st.st_size)
        if memo not in self.seen:
            h = xxhash.xxh3_128()
            try:
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                return None
            self.seen[memo] = h.hexdigest()
        return self.seen[memo]


class StepCache:
    """Keys, lookups and records of the step cache for one run."""

    def __init__(self, *, flow: str, run_id: int, flow_cls: type | None, graph: Any, params: dict[str, Any],
                 artifacts: Any, store: CacheStore, settings: CacheSettings,
                 alive: Callable[[str, int], bool] = lambda flow, run_id: True,
                 warn: Callable[[str], None] = lambda text: None):
        self.flow, self.run_id, self.flow_cls, self.graph = flow, run_id, flow_cls, graph
        self.params, self.artifacts, self.store, self.settings = params, artifacts, store, settings
        self.alive, self.warn = alive, warn
        self._files = _FileDigests()
        self._items: dict[tuple[str, int], str] = {}
        self._warned: set[str] = set()
        self._intact: set[str] = set()         # blob keys verified in this run
        self._pending: list[TaskKey] = []      # task keys, written with the scheduler's next flush
        self.claimed: dict[int, str] = {}      # task id -> key claimed by this run
        self._prefetched: dict[str, list[CacheEntry]] | None = None   # key -> entries, read once per run

    # -- which steps --------------------------------------------------------------------------
    def decorator(self, step: str) -> Any:
        for deco in getattr(self.graph[step], "decorators", []):
            if deco.name == "cache":
                return deco
        return None

    def enabled(self, step: str) -> bool:
        if self.settings.mode == "off" or self.flow_cls is None:
            return False
        deco = self.decorator(step)
        if deco is not None and deco.behavior == "disable":
            return False
        return deco is not None or self.settings.mode == "all"

    def recompute(self, step: str) -> bool:
        deco = self.decorator(step)
        return deco is not None and deco.behavior == "recompute"

    # -- the key ------------------------------------------------------------------------------
    def key(self, step: str, inputs: list[dict[str, dict[str, Any]]], frames: list[Any]) -> CacheKey:
        deco = self.decorator(step)
        ignore = list(getattr(deco, "ignore", None) or []) if deco is not None else []
        decos = getattr(self.graph[step], "decorators", [])
        assert self.flow_cls is not None
        fp = step_fingerprint(self.flow_cls, step, decos, ignore)
        parts = dict(fp.parts)
        reason = fp.reason
        parts["flow"] = self.flow
        parts["params"] = combine({k: v["key"] for k, v in self.params.items() if isinstance(v, dict) and "key" in v})
        frame_refs = {getattr(f.ref, "key", None) if not isinstance(f.ref, dict) else f.ref.get("key") for f in frames}
        parts["inputs"] = combine({f"{i}:{name}": ref["key"] for i, ns in enumerate(inputs)
                                   for name, ref in ns.items() if ref.get("key") not in frame_refs
                                   and name not in self.params})
        try:
            parts["item"] = combine({str(i): self._item_digest(f) for i, f in enumerate(frames)})
        except Unfingerprintable as exc:
            reason = reason or str(exc)
        if deco is not None:
            parts["version"] = str(deco.version or "")
            extra = deco.key
            if extra is not None:
                try:
                    parts["user_key"] = value_digest(extra() if callable(extra) else extra, "@cache(key=...)")
                except Unfingerprintable as exc:
                    reason = reason or str(exc)
                except Exception as exc:  # noqa: BLE001 - the user's key function failed
                    reason = reason or f"@cache(key=...) raised {type(exc).__name__}: {exc}"
        if reason and step not in self._warned:
            self._warned.add(step)
            self.warn(f"step {step!r} is not cached: {reason}. Pass @cache(ignore=[...]) to leave it out "
                      f"of the key, or @cache(key=...) to key it yourself.")
        return CacheKey(key=combine(parts), parts=parts, reason=reason)

    def _item_digest(self, frame: Any) -> str:
        ref = frame.ref if isinstance(frame.ref, dict) else frame.ref.to_dict()
        memo = (ref["key"], frame.index)
        if memo not in self._items:
            from keel.store.artifacts import ArtifactRef

            seq = self.artifacts.get(ArtifactRef.from_dict(ref))
            self._items.update({(ref["key"], i): value_digest(v, f"foreach item {i} of {frame.var!r}")
                                for i, v in enumerate(seq)})
        return self._items[memo]

    # -- lookups ------------------------------------------------------------------------------
    def lookup(self, key: CacheKey) -> tuple[CacheEntry | None, str | None]:
        """An intact entry with this key, or None and why not."""
        why = "no earlier run computed this key"
        tried: set[tuple[int, int]] = set()
        for entry in self._candidates(key.key):
            if (entry.run_id, entry.task_id) in tried:
                continue
            tried.add((entry.run_id, entry.task_id))
            changed = [p for p, d in entry.reads.items() if self._files.digest(p) != d]
            if changed:
                why = f"a file it read changed: {changed[0]}"
                continue
            problem = self._blobs_problem(entry)
            if problem:
                why = problem
                continue
            return entry, None
        return None, why

    def _candidates(self, key: str) -> Any:
        """Entries with ``key``, newest first: the run's prefetched ones, then the store's own answer
        (an entry made since the prefetch, by another run, or one the prefetch did not reach)."""
        if self._prefetched is None:
            self._prefetched = {}
            fetch = getattr(self.store, "entries_of", None)
            if fetch is not None:
                for entry in fetch(self.flow, PREFETCH_ENTRIES):
                    self._prefetched.setdefault(entry.key, []).append(entry)
        yield from self._prefetched.get(key, ())
        yield from self.store.entries(key)

    def _blobs_problem(self, entry: CacheEntry) -> str | None:
        for name, ref in entry.artifacts.items():
            if ref["key"] in self._intact:
                continue
            problem = self.artifacts.verify(ref["key"], ref.get("size"))
            if problem:
                return f"artifact {name!r} of {entry.flow}/{entry.run_id}/{entry.step}/{entry.task_id}: {problem}"
            self._intact.add(ref["key"])
        return None

    def claim(self, key: CacheKey, task_id: int) -> bool:
        """True when this run computes the key now; False when another live run is computing it."""
        holder = self.store.claim(Claim(key=key.key, flow=self.flow, run_id=self.run_id, claimed_at=time.time()))
        if holder is None or (holder.flow, holder.run_id) == (self.flow, self.run_id):
            self.claimed[task_id] = key.key
            return True
        if not self.alive(holder.flow, holder.run_id) or time.time() - holder.claimed_at > 6 * 3600:
            self.store.release(key.key, holder.run_id)
            return self.claim(key, task_id)
        return False

    def release(self, task_id: int) -> None:
        key = self.claimed.pop(task_id, None)
        if key is not None:
            self.store.release(key, self.run_id)

    def release_all(self) -> None:
        self.flush()
        for task_id in list(self.claimed):
            self.release(task_id)

    # -- records ------------------------------------------------------------------------------
    def record_key(self, step: str, task_id: int, key: CacheKey, *, hit: bool, note: str | None) -> None:
        """Note a task's key parts for ``keel cache explain`` (written by :meth:`flush`)."""
        self._pending.append(TaskKey(flow=self.flow, run_id=self.run_id, task_id=task_id, step=step,
                                     key=key.key, parts=key.parts, hit=hit, note=note, created_at=time.time()))

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            self.store.add_task_keys(pending)

    def record_entry(self, step: str, task_id: int, key: CacheKey, artifacts: dict[str, dict[str, Any]],
                     num_splits: int | None, reads: list[str]) -> None:
        digests = {}
        for path in reads:
            d = self._files.digest(path)
            if d is not None:
                digests[path] = d
        self.store.add_entry(CacheEntry(key=key.key, flow=self.flow, step=step, run_id=self.run_id,
                                        task_id=task_id, artifacts=artifacts, num_splits=num_splits,
                                        reads=digests, created_at=time.time()))
        self.release(task_id)


def explain(store: CacheStore, flow: str, run_id: int, step: str) -> list[str]:
    """Lines that say, per task of FLOW/RUN/STEP, its key parts and which changed since the last hit."""
    keys = store.task_keys(flow, run_id, step)
    if not keys:
        return [f"{flow}/{run_id}/{step} ran without caching: mark the step @cache or run with --cache"]
    lines = []
    prev = store.previous_task_key(flow, step, run_id, hit_only=True) or store.previous_task_key(flow, step, run_id)
    for tk in keys:
        head = f"task {tk.task_id}: {'hit' if tk.hit else 'miss'}" + (f" ({tk.note})" if tk.note else "")
        lines.append(head)
        for part, digest in sorted(tk.parts.items()):
            mark = ""
            if prev is not None:
                before = prev.parts.get(part)
                mark = "  same" if before == digest else ("  new" if before is None else "  CHANGED")
            lines.append(f"  {part:<11} {digest[:16]}{mark}")
    if prev is None:
        lines.append("no earlier run of this step had caching on: nothing to compare with")
    else:
        changed = sorted(p for p in set(prev.parts) | set(keys[0].parts) if prev.parts.get(p) != keys[0].parts.get(p))
        lines.append(f"compared with {flow}/{prev.run_id}/{step}/{prev.task_id}"
                     + (f": changed {', '.join(changed)}" if changed else ": nothing in the key changed"))
    return lines
