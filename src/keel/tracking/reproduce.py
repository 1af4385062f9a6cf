"""``keel reproduce FLOW/RUN``: run a run's code snapshot again, with the same parameters,
as a new run, and say which artifacts came out identical (same content hash) and which differ.

The snapshot is unpacked into a temporary folder and run there by a fresh interpreter
(``python -m keel.tracking.reproduce``), so nothing of the current folder leaks in. The
parameter values are the exact objects the original run stored (IncludeFile contents
included), not their text. The new run is tagged ``reproduces:FLOW/RUN``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keel.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from keel.store.metadata import MetadataStore


@dataclass
class Report:
    original: str
    reproduction: str | None
    status: str
    identical: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    only_original: list[str] = field(default_factory=list)
    only_reproduction: list[str] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    snapshot_files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _artifact_keys(md: MetadataStore, flow: str, run_id: int, skip: set[str]) -> dict[str, str]:
    """'step[i,j].name' -> content key, for the artifacts each task set itself."""
    out = {}
    for t in md.runs.list_tasks(flow, run_id):
        where = t.step + (f"[{','.join(str(f[2]) for f in t.foreach)}]" if t.foreach else "")
        for name, info in md.runs.task_artifacts(flow, run_id, t.task_id).items():
            if info["own"] and name not in skip:
                out[f"{where}.{name}"] = info["key"]
    return out


def _param_values(store: Any, record: Any) -> dict[str, Any]:
    """The parameter objects the run stored (every task carries them as read-only artifacts)."""
    from keel.store.artifacts import ArtifactRef

    md = store.metadata
    tasks = md.runs.list_tasks(record.flow, record.run_id)
    values = dict(record.params)
    if tasks:
        arts = md.runs.task_artifacts(record.flow, record.run_id, tasks[0].task_id)
        for name in record.params:
            info = arts.get(name)
            if info is not None:
                ref = ArtifactRef(key=info["key"], serializer=info["serializer"], size=info["size"])
                values[name] = store.artifacts.get(ref, what=f"parameter {name!r} of {record.pathspec}")
    return values


def environment_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two runs' environments (Python, packages, git), in words."""
    out = []
    if before.get("python") != after.get("python"):
        out.append(f"python {before.get('python')} -> {after.get('python')}")
    old, new = before.get("packages") or {}, after.get("packages") or {}
    for name in sorted(set(old) | set(new), key=str.lower):
        if old.get(name) != new.get(name):
            out.append(f"{name} {old.get(name, '(absent)')} -> {new.get(name, '(absent)')}")
    return out


def reproduce(store: Any, flow: str, run_id: int, *, quiet: bool = False, keep: bool = False) -> Report:
    import cloudpickle

    from keel.tracking.snapshot import unpack

    md = store.metadata
    record = md.runs.get_run(flow, run_id)
    if record is None:
        raise NotFoundError(f"no run {flow}/{run_id}; list the runs with: keel runs {flow}")
    snap = (record.environment or {}).get("snapshot") or {}
    folder = tempfile.mkdtemp(prefix=f"keel-reproduce-{flow}-{run_id}-")
    if snap.get("key"):
        entry = str(unpack(store, snap["key"], folder))
        nfiles = int(snap.get("files") or 1)
    elif record.code_key:
        name = os.path.basename((record.environment or {}).get("flow_file") or f"{flow.lower()}.py")
        entry = os.path.join(folder, name)
        with open(entry, "wb") as fh:
            fh.write(store.artifacts.get_bytes(record.code_key, what=f"code of {record.pathspec}"))
        nfiles = 1
    else:
        raise UsageError(f"run {record.pathspec} kept no code, so it cannot be reproduced")
    params_path = os.path.join(folder, ".keel-params.pkl")
    with open(params_path, "wb") as fh:
        cloudpickle.dump(_param_values(store, record), fh)
    id_path = os.path.join(folder, ".keel-run-id")
    settings = store.settings
    env = {**os.environ, "KEEL_HOME": str(settings.home), "KEEL_METADATA_URL": settings.metadata_url,
           "KEEL_ARTIFACT_URL": settings.artifact_url}
    from keel.runtime.entry import write_request

    request = os.path.join(folder, ".keel-request.json")
    write_request(request, {"kind": "flow", "flow_file": str(entry), "flow_name": flow, "params_file": params_path,
                            "system_tags": [f"reproduces:{record.pathspec}"], "quiet": quiet,
                            "command": f"keel reproduce {record.pathspec} # then: keel resume"})
    cmd = [sys.executable, "-m", "keel.runtime.entry", request, id_path]
    try:
        proc = subprocess.run(cmd, cwd=folder, env=env)
        new_id = int(open(id_path).read()) if os.path.exists(id_path) else None
    finally:
        if not keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    if new_id is None:
        left_out = ""
        if snap.get("key"):
            from keel.tracking.snapshot import load_manifest

            ignored = load_manifest(store, snap["key"]).get("ignored") or []
            if ignored:
                left_out = f"; the snapshot left out these files that .gitignore ignores: {', '.join(ignored)}"
        raise UsageError(f"the reproduction of {record.pathspec} did not start (exit status {proc.returncode})"
                         f"{left_out}")
    new = md.runs.get_run(flow, new_id)
    skip = set(record.params)
    before = _artifact_keys(md, flow, run_id, skip)
    after = _artifact_keys(md, flow, new_id, skip)
    report = Report(original=record.pathspec, reproduction=f"{flow}/{new_id}",
                    status=new.effective_status if new else "unknown", snapshot_files=nfiles)
    for name in sorted(set(before) | set(after)):
        if name not in after:
            report.only_original.append(name)
        elif name not in before:
            report.only_reproduction.append(name)
        elif before[name] == after[name]:
            report.identical.append(name)
        else:
            report.different.append(name)
    report.environment = environment_changes(record.environment or {}, new.environment if new else {})
    return report


def format_report(report: Report) -> str:
    lines = [f"{report.original} -> {report.reproduction} ({report.status}), "
             f"from its code snapshot ({report.snapshot_files} file{'s' if report.snapshot_files != 1 else ''})"]

    def block(title: str, names: list[str]) -> None:
        if names:
            lines.append(f"{title} ({len(names)}): {', '.join(names)}")

    block("identical", report.identical)
    block("different", report.different)
    block(f"only in {report.original}", report.only_original)
    block(f"only in {report.reproduction}", report.only_reproduction)
    if not (report.identical or report.different or report.only_original or report.only_reproduction):
        lines.append("no artifacts to compare")
    if report.environment:
        shown = report.environment[:10]
        more = f" (and {len(report.environment) - 10} more)" if len(report.environment) > 10 else ""
        lines.append("environment changed: " + "; ".join(shown) + more)
    else:
        lines.append("environment: same Python and packages")
    return "\n".join(lines)


def dumps(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2)

