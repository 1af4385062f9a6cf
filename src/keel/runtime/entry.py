"""The one entry point: everything that starts a run calls :func:`run` with a typed request.

    from keel.runtime.entry import RunRequest, ProjectRequest, run
    result = run(RunRequest(flow_cls=MyFlow, params={"alpha": 0.5}, flow_file="flow.py"))
    result = run(ProjectRequest(project=load_project("keel.yaml", flow_loader=load_flow_file)))

The CLI (``keel run``/``resume``/``project run``, ``python flow.py run``), a project's flow
jobs, ``keel scheduler``, ``keel sweep`` and ``keel reproduce`` all land here. A resume is a
:class:`RunRequest` whose ``options.reuse`` names the tasks to take (``keel.runtime.resume``).

Where a separate process is wanted for isolation (a sweep trial, a cron fire), it runs

    python -m keel.runtime.entry REQUEST.json

with a request written by :func:`write_request`: a JSON object, ``{"kind": "flow", "flow_file":
..., "params": {...}, "tags": [...]}`` or ``{"kind": "project", "project_file": ..., "jobs": [...]}``.
It exits 0 when the run succeeded, 130 when it was interrupted, 1 otherwise, 2 for a bad request.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from keel.runtime.launch import RunRequest, RunResult, start_run
from keel.runtime.project import ProjectResult, ProjectRunOptions, run_project

__all__ = ["ProjectRequest", "Request", "RunRequest", "RunResult", "ProjectResult", "exit_status",
           "read_request", "run", "write_request"]


@dataclass
class ProjectRequest:
    """Run a project's jobs (keel.yaml)."""

    project: Any                                   # keel.flow.project.Project
    options: ProjectRunOptions = field(default_factory=ProjectRunOptions)


Request = Union[RunRequest, ProjectRequest]


def run(request: Request, *, on_started: Callable[[int], None] | None = None) -> Any:
    """Start the run ``request`` describes, drive it to the end and return how it went
    (:class:`RunResult` for a flow run or resume, :class:`ProjectResult` for a project run)."""
    if isinstance(request, ProjectRequest):
        return run_project(request.project, request.options, on_started=on_started)
    return start_run(request, on_started=on_started)


def exit_status(result: Any) -> int:
    """0 for a run that succeeded, 130 for an interrupted one, 1 otherwise."""
    return {"succeeded": 0, "interrupted": 130}.get(result.status, 1)


# -- a request in a file, for a run in a process of its own ------------------------------------------
def write_request(path: str, data: dict[str, Any]) -> None:
    """Write a serialized request (see the module's docstring) for ``python -m keel.runtime.entry``."""
    kind = data.get("kind")
    if kind not in ("flow", "project"):
        raise ValueError(f"a request's kind is 'flow' or 'project', not {kind!r}")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def read_request(data: dict[str, Any]) -> Request:
    """The typed request for a serialized one (files are loaded, parameters checked)."""
    from keel.errors import UsageError

    kind = data.get("kind")
    if kind == "flow":
        from keel.flow.loader import load_flow_file
        from keel.flow.parameters import parse_cli_parameters
        from keel.flow.project import param_args
        from keel.runtime.scheduler import Options

        flow_file = str(data["flow_file"])
        flow_cls = load_flow_file(flow_file, data.get("flow_name"))
        params = parse_cli_parameters(flow_cls, param_args(dict(data.get("params") or {})))
        return RunRequest(flow_cls=flow_cls, params=params, flow_file=flow_file, tags=list(data.get("tags") or []),
                          options=Options(max_workers=int(data.get("max_workers") or 16)),
                          quiet=bool(data.get("quiet")), kind=str(data.get("run_kind") or "flow"),
                          origin_run_id=data.get("origin_run_id"), executors=list(data.get("executors") or []))
    if kind == "project":
        from keel.flow.loader import load_flow_file
        from keel.flow.project import load_project

        project = load_project(str(data["project_file"]), flow_loader=load_flow_file)
        options = ProjectRunOptions(jobs=list(data["jobs"]) if data.get("jobs") else None,
                                    with_deps=bool(data.get("with_deps")), downstream=bool(data.get("downstream")),
                                    tags=list(data.get("tags") or []), quiet=bool(data.get("quiet")))
        return ProjectRequest(project=project, options=options)
    raise UsageError(f"a run request's kind is 'flow' or 'project', not {kind!r}")


def main(argv: list[str] | None = None) -> int:
    """``python -m keel.runtime.entry REQUEST.json [RUN_ID_FILE]``: run it, exit with its status."""
    from keel.errors import KeelError, UsageError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) not in (1, 2):
            raise UsageError("usage: python -m keel.runtime.entry REQUEST.json [RUN_ID_FILE]")
        try:
            with open(args[0], encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the run request {args[0]}: {exc}") from None
        request = read_request(data)

        def started(run_id: int) -> None:
            if len(args) == 2:
                with open(args[1] + ".tmp", "w") as out:
                    out.write(str(run_id))
                os.replace(args[1] + ".tmp", args[1])

        return exit_status(run(request, on_started=started))
    except UsageError as exc:
        sys.stderr.write(f"keel: {exc}\n")
        return 2
    except KeelError as exc:
        sys.stderr.write(f"keel: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
