"""StepCache lookups against a real SQLite cache store: the prefetch answers hits without a
query per task, and entries made after it are still found."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.runtime.cache import CacheKey, CacheSettings, StepCache
from keel.store import Store
from keel.store.cache import CacheEntry


class CountingEntries:
    """The real SQL cache store, counting its per-key lookups."""

    def __init__(self, store):
        self.store, self.per_key = store, 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def entries(self, key):
        self.per_key += 1
        return self.store.entries(key)


@pytest.fixture
def store(keel_home: Path) -> Store:
    return Store.from_env()


def _cache(store: Store, counting: CountingEntries) -> StepCache:
    return StepCache(flow="F", run_id=9, flow_cls=None, graph=None, params={}, artifacts=store.artifacts,
                     store=counting, settings=CacheSettings("auto"))


def _entry(store: Store, key: str, run_id: int) -> CacheEntry:
    ref = store.artifacts.put(f"value of {key}").to_dict()
    return CacheEntry(key=key, flow="F", step="s", run_id=run_id, task_id=1, artifacts={"x": ref})


def test_hits_on_prefetched_entries_need_no_query_per_key(store):
    for i in range(5):
        store.metadata.cache.add_entry(_entry(store, f"k{i}", i + 1))
    counting = CountingEntries(store.metadata.cache)
    cache = _cache(store, counting)
    found = [cache.lookup(CacheKey(key=f"k{i}", parts={}))[0] for i in range(5)]
    assert [e.run_id for e in found] == [1, 2, 3, 4, 5]
    assert counting.per_key == 0


def test_an_entry_made_after_the_prefetch_is_found(store):
    store.metadata.cache.add_entry(_entry(store, "old", 1))
    counting = CountingEntries(store.metadata.cache)
    cache = _cache(store, counting)
    assert cache.lookup(CacheKey(key="new", parts={}))[0] is None
    store.metadata.cache.add_entry(_entry(store, "new", 2))
    entry, why = cache.lookup(CacheKey(key="new", parts={}))
    assert entry is not None and entry.run_id == 2, why
