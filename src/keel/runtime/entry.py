"""The one entry point: everything that starts a run calls :func:`run` with a typed request.

    from keel.runtime.entry import RunRequest, ProjectRequest, run
    result = run(RunRequest(flow_cls=MyFlow, params={"alpha": 0.5}, flow_file="flow.py"))
    result = run(ProjectRequest(project=load_project("keel.yaml", flow_loader=load_flow_file)))

The CLI (``keel run``/``resume``/``project run``, ``python flow.py run``), a project's flow
jobs, ``keel scheduler``, ``keel sweep`` and ``keel reproduce`` all land here. A resume is a
:class:`RunRequest` whose ``options.reuse`` names the tasks to take (``keel.runtime.resume``).

Where a separate process is wanted for isolation (a sweep trial, a cron fire), it runs

    python -m keel.runtime.entry REQUEST.json

with a request written by :func:`write_request`: a JSON object,

    {"kind": "flow", "flow_file": "flow.py", "flow_name": null, "params": {"alpha": "0.5"},
     "params_file": null, "tags": [], "max_workers": 16, "max_num_splits": 100,
     "executors": [], "quiet": false, "command": "", "branch": null, "production": false}
    {"kind": "project", "project_file": "keel.yaml", "jobs": ["ingest"], "with_deps": false,
     "downstream": true, "tags": [], "quiet": false}

(``params`` are values as written on a command line, parsed by the flow's Parameters, defaults
for the rest; ``params_file`` instead is a pickle of the exact values). The optional RUN_ID_FILE receives the new run's id as soon as it exists.
It exits 0 when the run succeeded, 130 when it was interrupted, 1 otherwise, 2 for a bad request.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

from keel.runtime.launch import RunRequest, RunResult, start_run

if TYPE_CHECKING:  # a flow run does not import the project runner (pydantic, the keel.yaml models)
    from keel.runtime.project import ProjectResult, ProjectRunOptions

__all__ = ["ProjectRequest", "Request", "RunRequest", "RunResult", "ProjectResult", "exit_status",
           "read_request", "run", "write_request"]


@dataclass(frozen=True)
class ProjectRequest:
    """Run a project's jobs (keel.yaml)."""

    project: Any                                   # keel.flow.project.Project
    options: ProjectRunOptions = field(default_factory=lambda: _project().ProjectRunOptions())


Request = Union[RunRequest, ProjectRequest]


def _project() -> Any:
    import keel.runtime.project

    return keel.runtime.project


def __getattr__(name: str) -> Any:
    if name in ("ProjectResult", "ProjectRunOptions"):
        return getattr(_project(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(request: Request, *, on_started: Callable[[int], None] | None = None, store: Any = None) -> Any:
    """Start the run ``request`` describes, drive it to the end and return how it went
    (:class:`RunResult` for a flow run or resume, :class:`ProjectResult` for a project run).
    ``on_started`` gets the new run's id as soon as it exists; ``store``: default from the environment."""
    if isinstance(request, ProjectRequest):
        return _project().run_project(request.project, request.options, on_started=on_started, store=store)
    return start_run(request, on_started=on_started, store=store)


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
        from keel.flow.parameters import resolve_parameters
        from keel.runtime.scheduler import Options

        flow_file = str(data["flow_file"])
        flow_cls = load_flow_file(flow_file, data.get("flow_name"))
        if data.get("params_file"):  # exact Python values (reproduce), pickled
            import pickle

            with open(data["params_file"], "rb") as fh:
                params = dict(pickle.load(fh))
        else:
            params = resolve_parameters(flow_cls, dict(data.get("params") or {}))
        options = Options(max_workers=int(data.get("max_workers") or 16),
                          max_num_splits=int(data.get("max_num_splits") or 100))
        return RunRequest(flow_cls=flow_cls, params=params, flow_file=flow_file, tags=list(data.get("tags") or []),
                          system_tags=list(data.get("system_tags") or []),
                          options=options, quiet=bool(data.get("quiet")), command=str(data.get("command") or ""),
                          executors=list(data.get("executors") or []),
                          branch=data.get("branch") or None, production=bool(data.get("production")))
    if kind == "project":
        from keel.flow.loader import load_flow_file
        from keel.flow.project import load_project

        project = load_project(str(data["project_file"]), flow_loader=load_flow_file)
        project_options = _project().ProjectRunOptions(jobs=list(data["jobs"]) if data.get("jobs") else None,
                                    with_deps=bool(data.get("with_deps")), downstream=bool(data.get("downstream")),
                                    tags=list(data.get("tags") or []), quiet=bool(data.get("quiet")),
                                    cache=data.get("cache"))
        return ProjectRequest(project=project, options=project_options)
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
        try:
            request = read_request(data)
        except KeelError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's module failed to import
            where = data.get("flow_file") or data.get("project_file")
            sys.stderr.write(f"keel: {where} cannot be loaded: {type(exc).__name__}: {exc}\n")
            return 2

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
