"""Where a run's artifact is: one question of the store, answered without SQLAlchemy on SQLite.

``keel serve`` asks it once at start: which run (a given one, or the flow's latest successful
run), which task holds the artifact, and its reference. On a SQLite store at this code's schema
revision, ``SqliteLookup`` reads it with the standard library's ``sqlite3`` (read only), which
saves importing SQLAlchemy and the store's query layer (about a fifth of a second of CPU at
an endpoint's start). It gives the answer the client gives through the metadata store
(``tests/serve/test_artifact_lookup.py`` pins that on stores of several shapes).

Only the successful answer is fast: a run that is missing or not succeeded, or an artifact no
task set, is ``None``, and the caller asks the full store, whose errors say what to do.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping

from keel.store.revision import SCHEMA_HEAD

_HIDDEN = "_keel"  # Keel's own artifacts (cards, ...), never served


@dataclass(frozen=True)
class ArtifactLocation:
    """The task of a succeeded run that holds an artifact, and every artifact of that task
    (name -> ``{"key", "serializer", "size"}``, the form ``ArtifactRef`` takes)."""

    flow: str
    run_id: int
    step: str
    task_id: int
    name: str
    artifacts: Mapping[str, Mapping[str, Any]]

    @property
    def ref(self) -> Mapping[str, Any]:
        return self.artifacts[self.name]


def _pick(steps: list[str], holders: list[tuple[str, int]]) -> tuple[str, int] | None:
    """The first task (by id) of the latest step (by position) among ``holders`` (step, task id)."""
    order = {step: i for i, step in enumerate(steps)}
    known = [h for h in holders if h[0] in order]
    return min(known, key=lambda h: (-order[h[0]], h[1])) if known else None


def _visible(refs: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {n: {"key": r["key"], "serializer": r["serializer"], "size": int(r["size"])}
            for n, r in refs.items() if not n.startswith(_HIDDEN)}


class SqliteLookup:
    """Where an artifact is, read from a SQLite store file (read only, standard library only)."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    @classmethod
    def open(cls, metadata_url: str) -> SqliteLookup | None:
        """A reader of the store at ``metadata_url``, or None when this one cannot answer (not
        SQLite, no such file, another schema revision: the full store migrates or explains)."""
        if not metadata_url.startswith("sqlite:///"):
            return None
        path = metadata_url.split("///", 1)[1]
        if not path or path == ":memory:" or not os.path.isfile(path):
            return None
        try:
            conn = sqlite3.connect("file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro", uri=True,
                                   timeout=60, check_same_thread=False)
        except sqlite3.Error:
            return None
        try:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.Error:            # not a store (yet), or a file this user cannot read
            rows = []
        if rows != [(SCHEMA_HEAD,)]:
            conn.close()
            return None
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

    def latest_successful_run_id(self, flow: str) -> int | None:
        """The id of ``flow``'s newest succeeded run, or None (``keel serve`` polls it to follow
        the flow). Raises ``sqlite3.Error`` when the file cannot be read: ask the full store then."""
        found = self._conn.execute("SELECT max(run_id) FROM runs WHERE flow = ? AND status = 'succeeded'",
                                   (flow,)).fetchone()[0]
        return None if found is None else int(found)

    def locate(self, flow: str, run_id: int | None, name: str) -> ArtifactLocation | None:
        """The task of ``flow``'s run ``run_id`` (None: its latest successful run) that serves
        ``name``, chosen as the client's reading does (``keel.serve.model``): the end step's first
        task when it holds the artifact, else the first task of the latest step that set it.
        None when the run is missing or not succeeded, no task set it, or SQLite reports an error."""
        if name.startswith(_HIDDEN):
            return None
        try:
            return self._locate(flow, run_id, name)
        except (sqlite3.Error, OverflowError):
            return None

    def _locate(self, flow: str, run_id: int | None, name: str) -> ArtifactLocation | None:
        q = self._conn.execute
        if run_id is None:
            run_id = self.latest_successful_run_id(flow)
            if run_id is None:
                return None
        elif q("SELECT status FROM runs WHERE flow = ? AND run_id = ?", (flow, run_id)).fetchone() != ("succeeded",):
            return None
        steps = [r[0] for r in q("SELECT step FROM steps WHERE flow = ? AND run_id = ? ORDER BY position",
                                 (flow, run_id))]
        first_end = q("SELECT min(task_id) FROM tasks WHERE flow = ? AND run_id = ? AND step = 'end'",
                      (flow, run_id)).fetchone()[0] if "end" in steps else None
        holders = q("SELECT t.step, t.task_id FROM artifacts a JOIN tasks t ON t.flow = a.flow AND "
                    "t.run_id = a.run_id AND t.task_id = a.task_id WHERE a.flow = ? AND a.run_id = ? AND a.name = ?",
                    (flow, run_id, name)).fetchall()
        if first_end is not None and ("end", first_end) in holders:
            chosen: tuple[str, int] | None = ("end", first_end)
        else:
            chosen = _pick(steps, holders)
        if chosen is None:
            return None
        refs = {r[0]: {"key": r[1], "serializer": r[2], "size": int(r[3])} for r in q(
            "SELECT name, key, serializer, size FROM artifacts WHERE flow = ? AND run_id = ? AND task_id = ? "
            "ORDER BY name", (flow, run_id, chosen[1]))}
        return ArtifactLocation(flow, run_id, chosen[0], chosen[1], name, _visible(refs))
