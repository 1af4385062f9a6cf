"""Following a flow's latest successful run: watch for a newer one, load it beside the old, swap.

``latest_successful_run_id`` is the one place that asks "is there a newer run?"; it polls the
store (one indexed query). When the store's event log lands, only that function changes.
``ModelSlot`` holds the model being served. Requests read ``slot.current`` once and use that
object to the end, so a swap (one reference assignment, after the new model is fully loaded)
never lets a request see half of a model.
"""

from __future__ import annotations

import gc
import logging
import threading
from typing import Callable

from keel.serve.model import LoadedModel

log = logging.getLogger("keel.serve")


def latest_successful_run_id(flow: str) -> int | None:
    """The id of ``flow``'s newest successful run, or None. Cheap: called every poll interval
    (on a SQLite store with sqlite3 alone, ``keel.store.lookup``; else through the client)."""
    import sqlite3

    from keel.settings import Settings
    from keel.store.lookup import SqliteLookup

    lookup = SqliteLookup.open(Settings.from_env().metadata_url)
    if lookup is not None:
        try:
            return lookup.latest_successful_run_id(flow)
        except sqlite3.Error:
            pass
        finally:
            lookup.close()
    from keel.client.core import Flow

    run = Flow(flow).latest_successful_run
    return run.id if run is not None else None


class ModelSlot:
    """The served model; ``follow()`` starts a thread that swaps in newer successful runs."""

    def __init__(self, model: LoadedModel, loader: Callable[[int], LoadedModel] | None = None,
                 interval: float = 0.5):
        self.current = model
        self._loader = loader
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.swaps = 0
        self._failed: set[int] = set()
        self._refreeze = False

    def follow(self) -> None:
        if self._loader is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="keel-serve-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check_once(self) -> bool:
        """Swap to a newer successful run if there is one; True when it swapped."""
        assert self._loader is not None
        newest = latest_successful_run_id(self.current.flow)
        if newest is None or newest <= self.current.run_id or newest in self._failed:
            return False
        try:
            model = self._loader(newest)       # loaded beside the old one, which keeps serving
        except Exception:
            self._failed.add(newest)           # tried once; the next successful run is tried again
            raise
        old = self.current
        self.current = model                   # the swap: one atomic reference assignment
        self.swaps += 1
        self._refreeze = True
        log.info("keel serve: now serving %s (was %s), artifact %s", model.run, old.run, model.key)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            if self._refreeze:
                # The app froze the heap at start (gc.freeze); one poll after a swap, the old
                # model's requests are done: collect it (its cycles too) and freeze the new one.
                self._refreeze = False
                gc.unfreeze()
                gc.collect()
                gc.freeze()
            try:
                self.check_once()
            except Exception:  # a bad new run must not stop the old model serving
                log.exception("keel serve: could not load the newest run of %s; still serving %s",
                              self.current.flow, self.current.run)
