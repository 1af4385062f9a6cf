"""``keel store verify [--repair]``: find blobs whose bytes no longer match their content hash.

A damaged blob is reported with the runs and artifacts that point at it. ``--repair`` deletes it:
the next write of the same bytes (rerunning or resuming the step that produced it) stores them
again, and a dedup never hands the damaged blob to a new run (``ArtifactStore._healthy``).
"""

from __future__ import annotations

import sys
import click

from keel.cli.text import plain


def cmd_store_verify(repair: bool, as_json: bool) -> int:
    from keel.store import Store

    store = Store.from_env()
    artifacts = store.artifacts
    damaged: dict[str, str] = {}
    checked = 0
    for key in artifacts.backend.keys():
        checked += 1
        problem = artifacts.verify(key)
        if problem is not None and problem != "missing":  # missing: deleted meanwhile
            damaged[key] = problem
    users = store.metadata.runs.artifacts_by_key(damaged) if damaged else []
    if repair:
        for key in damaged:
            artifacts.backend.delete(key)
    if as_json:
        from keel.tracking.jsonsafe import dumps

        print(dumps({"checked": checked, "damaged": [
            {"key": k, "problem": p, "repaired": repair,
             "artifacts": [f"{u['flow']}/{u['run_id']}/{u['task_id']}:{u['name']}" for u in users if u["key"] == k]}
            for k, p in damaged.items()]}, indent=2))
        return 1 if damaged and not repair else 0
    if not damaged:
        print(f"{checked} blobs checked; every one matches its content hash.")
        return 0
    for key, problem in damaged.items():
        print(f"blob {key}: {plain(problem)}{' (deleted)' if repair else ''}")
        for u in (u for u in users if u["key"] == key):
            print(f"  used by artifact {plain(u['name'])!s} of {plain(u['flow'])}/{u['run_id']} (task {u['task_id']})")
    runs = sorted({(u["flow"], u["run_id"]) for u in users})
    if repair:
        print(f"{len(damaged)} damaged blob(s) of {checked} deleted. The next write of the same bytes stores them "
              f"again: rerun or resume the runs that used them" + (f" ({', '.join(f'{f}/{r}' for f, r in runs)})"
                                                                      if runs else "") + ".", file=sys.stderr)
        return 0
    print(f"{len(damaged)} damaged blob(s) of {checked}. Delete them with: keel store verify --repair",
          file=sys.stderr)
    return 1


def register(cli: click.Group) -> None:
    from keel.cli.main import _guard

    @cli.group()
    def store() -> None:
        """The store itself: keel store verify [--repair]."""

    @store.command()
    @click.option("--repair", is_flag=True, help="delete damaged blobs, so that the next write stores them again")
    @click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
    def verify(repair: bool, as_json: bool) -> None:
        """Check every blob against its content hash; report the runs that use a damaged one."""
        _guard(lambda: cmd_store_verify(repair, as_json))
