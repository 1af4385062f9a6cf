"""The commands of one flow: ``python flow.py run|resume|show|check|logs ...``.

``keel run flow.py ...`` lands here too after loading the file. Parameters are dynamic
(one ``--name`` per Parameter), so arguments are parsed here by hand, with one-line errors.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from typing import Any, NoReturn

from keel.errors import DefinitionError, KeelError, UsageError

USAGE = """Usage: python {file} COMMAND [OPTIONS]

Commands:
  run [--PARAM VALUE]... [--max-workers 16] [--max-num-splits 100] [--tag T]... [--quiet]
      [--branch B | --production]   (a flow with @project)
      [--with ray[:address=auto,cpu=4,memory=10000] | --with kubernetes[:image=...,cpu=2]]
                       run the flow (--with: every step on Ray or Kubernetes)
  resume [RUN_ID] [STEP] [--origin-run-id ID]
                       a new run that reuses the tasks an earlier run finished
  tag add|remove|replace|list [--run-id ID] TAG...
                       change or list a run's tags (the latest run without --run-id)
  show                 print the flow's graph
  check                check the flow's graph and report every problem
  logs RUN/STEP[/TASK] [--stderr] [--follow]
                       print a task's output
"""

_RUN_FLAGS = {"--max-workers": int, "--max-num-splits": int}


def fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"keel: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def load_flow_file(path: str, flow_name: str | None = None) -> type:
    """Import a flow file (its folder on sys.path) and return its FlowSpec subclass."""
    from keel.flow.spec import FlowSpec

    if not os.path.isfile(path):
        raise UsageError(f"no flow file {path!r}; give the path of a .py file that defines a FlowSpec")
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise DefinitionError(f"{path}:{exc.lineno}: {exc.msg}") from None
    flows = [v for v in vars(module).values()
             if inspect.isclass(v) and issubclass(v, FlowSpec) and v is not FlowSpec and v.__module__ == name]
    if flow_name:
        flows = [f for f in flows if f.__name__ == flow_name]
    leaves = [f for f in flows if not any(o is not f and issubclass(o, f) for o in flows)]
    if not leaves:
        raise UsageError(f"{path} defines no FlowSpec subclass" + (f" named {flow_name!r}" if flow_name else ""))
    if len(leaves) > 1:
        names = ", ".join(f.__name__ for f in leaves)
        raise UsageError(f"{path} defines several flows ({names}); pick one with --flow NAME")
    return leaves[0]


def run_flow_cli(flow_cls: type, argv: list[str] | None = None, flow_file: str | None = None,
                 prog: str | None = None) -> NoReturn:
    """Entry point of ``FlowSpec.__init__`` in ``python flow.py COMMAND``: never returns."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flow_file = flow_file or inspect.getsourcefile(flow_cls) or sys.argv[0]
    prog = prog or f"python {os.path.basename(flow_file)}"
    try:
        code = dispatch(flow_cls, flow_file, argv, prog)
    except UsageError as exc:
        fail(str(exc), 2)
    except KeelError as exc:
        fail(str(exc), 1)
    raise SystemExit(code)


def dispatch(flow_cls: type, flow_file: str, argv: list[str], prog: str) -> int:
    project_opts: list[str] = []  # Metaflow puts @project's --branch/--production before the command
    while argv and argv[0] in ("--no-pylint", "--quiet-pylint", "--branch", "--production"):
        if argv[0] == "--branch":
            project_opts += argv[:2]
            del argv[:2]
        elif argv[0] == "--production":
            project_opts.append(argv.pop(0))
        else:
            argv.pop(0)  # Metaflow habits, harmless here
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE.format(file=os.path.basename(flow_file)))
        return 0
    command, args = argv[0], argv[1:] + project_opts
    if command == "run":
        return cmd_run(flow_cls, flow_file, args, prog)
    if command == "resume":
        from keel.cli.resume import cmd_resume

        return cmd_resume(flow_cls, flow_file, args, prog)
    if command == "show":
        from keel.flow.graph import FlowGraph

        sys.stdout.write(FlowGraph(flow_cls).to_text().rstrip() + "\n")
        return 0
    if command == "check":
        from keel.flow.graph import FlowGraph

        FlowGraph(flow_cls).check()
        sys.stdout.write(f"{flow_cls.__name__}: the graph is valid.\n")
        return 0
    if command == "tag":
        from keel.cli.tracking import cmd_flow_tag

        return cmd_flow_tag(flow_cls.__name__, args)
    if command == "logs":
        from keel.cli.reading import cmd_logs

        return cmd_logs(flow_cls.__name__, args)
    raise UsageError(f"unknown command {command!r}; commands are: run, resume, show, check, logs, tag "
                     f"(see {prog} --help)")


def split_run_args(args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Separate the runtime's own options from the flow's parameters."""
    opts: dict[str, Any] = {"tags": [], "with": [], "quiet": False, "run_id_file": None, "flow": None,
                            "branch": None, "production": False}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in _RUN_FLAGS or name in ("--tag", "--with", "--run-id-file", "--flow", "--branch"):
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{name} needs a value")
                i += 1
                value = args[i]
            if name in _RUN_FLAGS:
                try:
                    number = _RUN_FLAGS[name](value)
                except ValueError:
                    raise UsageError(f"{name} expects an integer, got {value!r}") from None
                if number < 1:
                    raise UsageError(f"{name} must be at least 1, got {number}")
                opts[name[2:].replace("-", "_")] = number
            elif name == "--tag":
                opts["tags"].append(value)
            elif name == "--with":
                opts["with"].append(value)
            else:
                opts[name[2:].replace("-", "_")] = value
        elif arg in ("--quiet", "-q"):
            opts["quiet"] = True
        elif arg == "--production":
            opts["production"] = True
        else:
            rest.append(arg)
        i += 1
    return opts, rest


def cmd_run(flow_cls: type, flow_file: str, args: list[str], prog: str) -> int:
    from keel.flow.parameters import parse_cli_parameters
    from keel.runtime.launch import RunRequest, start_run
    from keel.runtime.placement import parse_with
    from keel.runtime.scheduler import Options

    opts, rest = split_run_args(args)
    for item in opts["with"]:
        parse_with(item)  # a bad --with is a usage error, before anything runs
    params = parse_cli_parameters(flow_cls, rest)
    options = Options(max_workers=opts.get("max_workers", 16), max_num_splits=opts.get("max_num_splits", 100))
    req = RunRequest(flow_cls=flow_cls, params=params, flow_file=flow_file, tags=opts["tags"], options=options,
                     quiet=opts["quiet"], command=f"{prog} resume" if prog.startswith("python") else "",
                     executors=opts["with"], branch=opts["branch"], production=opts["production"])
    return exit_status(start_run(req, on_started=_run_id_writer(opts["run_id_file"])))


def _run_id_writer(path: str | None) -> Any:
    if not path:
        return None

    def write(run_id: int) -> None:
        with open(path, "w") as fh:
            fh.write(str(run_id))

    return write


def exit_status(result: Any) -> int:
    """0 for a run that succeeded, 130 for an interrupted one, 1 otherwise."""
    if result.status == "succeeded":
        return 0
    if result.status == "interrupted":
        return 130
    return 1
