"""The cyclic garbage collector while a ``run`` or ``resume`` command starts.

Starting a run imports SQLAlchemy, the store and the runtime: some 100,000 objects that live as
long as the process. Python's collector scans them again and again while they are made (about
130 collections, ~35 ms of a ~350 ms ``resume``), and every task forked later scans them once
more, writing to each page that holds one. So the command pauses the collector while it imports
and plans, and when the run starts freezes what exists (``gc.freeze``: never scanned again, by
this process or its forks) and turns the collector back on.

Only in a process that Keel's own entry point started (``python flow.py``, the ``keel`` script):
a frozen object is never collected as part of a cycle, so a caller that runs commands in its own
process (a test, a notebook) keeps its collector as it was. When the command ends the objects are
unfrozen again, so that the collection at exit closes what only it closes (the store's SQLite
connections: the last one to close folds the WAL into the database file).
"""

from __future__ import annotations

import gc
from typing import Callable

_owned = False   # this process was started by Keel's entry point: its collector is ours to tune


def own_process() -> None:
    """Called by the process's entry point (``run_flow_cli``, ``keel``'s ``main``)."""
    global _owned
    _owned = True


class StartupGC:
    """Pauses the collector from now until the run starts (:meth:`started`) or the command ends
    (:meth:`close`); does nothing where the process is not Keel's own or the collector is off."""

    def __init__(self) -> None:
        self._paused = _owned and gc.isenabled()
        self._frozen = False
        if self._paused:
            gc.disable()

    def started(self, then: Callable[[int], None] | None) -> Callable[[int], None]:
        """An ``on_started`` callback: freezes what the start made, resumes collecting, then calls ``then``."""

        def on_started(run_id: int) -> None:
            if self._paused:
                gc.freeze()
                self._frozen = True
                self._paused = False
                gc.enable()
            if then is not None:
                then(run_id)

        return on_started

    def close(self) -> None:
        """The command ended: the collector on, and what was frozen collectable again."""
        if self._frozen:
            self._frozen = False
            gc.unfreeze()
        if self._paused:
            self._paused = False
            gc.enable()
