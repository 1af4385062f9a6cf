"""The commands of one flow: ``python flow.py run|resume|show|check|logs|tag ...``, built with click.

``flow_cli(flow_cls)`` makes the click group; its ``run`` command has one option per
:class:`~keel.flow.parameters.Parameter` (help text, type and default shown by ``--help``)
beside the runtime's own options (``--config PATH`` for a ``Config`` named config is one of those
Parameter options; Metaflow's ``--config NAME PATH`` / ``--config-value NAME JSON`` are options of
the group, before the command, and ``keel run flow.py`` takes them anywhere (``_hoist_config_args``); ``--branch``/``--production`` for ``@project``, before or after the command, as
in Metaflow; ``--run-id-file``). ``keel run flow.py ...`` lands here too after loading the
file. Bad input is one line and exit 2, in the words the tests pin (click's own wording is
translated in :class:`_OneLineErrors`).
"""

from __future__ import annotations

import inspect
import os
import sys
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click

from keel.cli.startup import StartupGC, own_process
from keel.errors import KeelError, UsageError, clip
from keel.flow.loader import load_flow_file

__all__ = ["RunOptions", "dispatch", "dispatch_command", "exit_status", "flow_cli", "generic_help", "invoke", "load_flow_file",
           "logs_command", "parse_run_args", "run_command", "run_flow_cli", "run_id_writer", "tag_command"]

_COMMANDS = ("run", "resume", "show", "check", "logs", "tag")
_HELP = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"keel: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


@dataclass(frozen=True)
class RunOptions:
    """The runtime's own options of ``run`` (and ``resume``), and the flow's parameter values."""

    max_workers: int = 16
    max_num_splits: int = 100
    tags: tuple[str, ...] = ()
    executors: tuple[str, ...] = ()
    quiet: bool = False
    cache: bool | None = None                                 # --cache (every step) / --no-cache / neither
    params: dict[str, str] = field(default_factory=dict)     # parameter name -> the text given (run only)
    branch: str | None = None                                # @project: --branch B (test.B)
    production: bool = False                                 # @project: --production (prod)
    run_id_file: str | None = None                           # the new run's id is written there at its start


# -- option types ----------------------------------------------------------------------------------
class _AtLeastOne(click.ParamType):
    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        flag = param.opts[0] if param is not None else "the value"
        try:
            number = int(value)
        except ValueError:
            raise UsageError(f"{flag} expects an integer, got {clip(value)}") from None
        if number < 1:
            raise UsageError(f"{flag} must be at least 1, got {number}")
        return number


_METAVARS = {int: "INTEGER", float: "FLOAT", bool: "BOOLEAN", str: "TEXT"}


def _parameter_options(flow_cls: type) -> list[click.Option]:
    """One click option per Parameter. Values stay text here and are parsed by the Parameter
    itself (Parameter.resolve), so ``python flow.py run``, a project job and a sweep trial agree."""
    from keel.flow.parameters import Config, IncludeFile, as_text, flow_parameters

    options: list[click.Option] = []
    for i, (name, p) in enumerate(flow_parameters(flow_cls).items()):
        decls = [f"--{name}"] + ([f"--{p.attr}"] if p.attr != name else []) + [f"_param_{i}"]
        metavar = "PATH" if isinstance(p, (IncludeFile, Config)) else _METAVARS.get(p.type, "JSON")
        try:
            default = p.default
        except Exception:  # noqa: BLE001 - a default function that needs a run
            default = None
        shown = f"[default: {as_text(default)}]" if default is not None else ("[required]" if p.required else "")
        extra: dict[str, Any] = {"is_flag": False, "flag_value": "true"} if p.type is bool else {}
        options.append(click.Option(decls, default=None, metavar=metavar, required=False,
                                    help=" ".join(filter(None, [p.help, shown])) or None, **extra))
        if p.type is bool:
            options.append(click.Option([f"--no-{name}", f"_param_{i}_off"], is_flag=True, default=False,
                                        hidden=True))
    return options


def _runtime_options(resume: bool = False) -> list[click.Option]:
    opts = [
        click.Option(["--max-workers"], type=_AtLeastOne(), default=16, show_default=True,
                     help="tasks running at once, at most"),
        click.Option(["--max-num-splits"], type=_AtLeastOne(), default=100, show_default=True,
                     help="the most tasks one foreach may fan out into"),
        click.Option(["--tag", "tags"], multiple=True, metavar="TAG", help="tag the run (repeatable)"),
        click.Option(["--with", "executors"], multiple=True, metavar="ray[:k=v,...]|kubernetes[:k=v,...]",
                     help="run every step on Ray or Kubernetes (e.g. --with ray:address=auto,cpu=4)"),
        click.Option(["--quiet", "-q"], is_flag=True, help="print only the tasks' output and the result"),
        click.Option(["--cache/--no-cache"], default=None,
                     help="--cache: reuse every step's outputs from an earlier run with the same inputs and "
                          "code (not only @cache steps); --no-cache: compute every step"),
        click.Option(["--branch"], default=None, metavar="BRANCH",
                     help="@project: run on the branch test.BRANCH (prod.BRANCH with --production)"),
        click.Option(["--production"], is_flag=True, default=False, help="@project: run on the production branch"),
        click.Option(["--run-id-file"], default=None, metavar="PATH",
                     help="write the new run's id to this file as soon as it exists"),
    ]
    if resume:
        opts.append(click.Option(["--origin-run-id"], default=None, metavar="ID",
                                 help="the run to resume (the same as RUN_ID)"))
    return opts


class _OneLineErrors(click.Command):
    """A command whose parse errors are Keel's one-line messages, not click's usage block."""

    unknown_option: str = "unknown option {option}"

    def __init__(self, *args: Any, flow_cls: type | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.flow_cls = flow_cls

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            raise UsageError(self._unknown(exc.option_name)) from None
        except click.BadOptionUsage as exc:
            raise UsageError(self._needs_value(exc.option_name)) from None
        except click.UsageError as exc:
            raise UsageError(exc.format_message()) from None

    def _unknown(self, option: str) -> str:
        return self.unknown_option.format(option=option)

    def _needs_value(self, option: str) -> str:
        return f"{option} needs a value"


class _RunCommand(_OneLineErrors):
    def _unknown(self, option: str) -> str:
        import difflib

        from keel.flow.parameters import flow_parameters

        names = list(flow_parameters(self.flow_cls)) if self.flow_cls is not None else []
        name = option.lstrip("-")
        hint = difflib.get_close_matches(name, names, n=1)
        known = ", ".join(f"--{p}" for p in names) or "none"
        guess = f" Did you mean --{hint[0]}?" if hint else ""
        return f"unknown parameter {option}.{guess} The flow's parameters are: {known}"

    def _needs_value(self, option: str) -> str:
        from keel.flow.parameters import flow_parameters

        params = flow_parameters(self.flow_cls) if self.flow_cls is not None else {}
        param = params.get(option.lstrip("-")) or next((p for p in params.values() if f"--{p.attr}" == option), None)
        return f"{option} needs a value ({param.type_name})" if param is not None else f"{option} needs a value"


class _ResumeCommand(_OneLineErrors):
    unknown_option = "resume does not take {option}: parameters come from the origin run"


class _LogsCommand(_OneLineErrors):
    unknown_option = "logs does not take {option}; options are --stderr and --follow"


class _FlowGroup(click.Group):
    def __init__(self, *args: Any, prog: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.prog = prog

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands:
            raise UsageError(f"unknown command {clip(args[0])}; commands are: {', '.join(_COMMANDS)} "
                             f"(see {self.prog} --help)")
        return super().resolve_command(ctx, args)


# -- the commands ------------------------------------------------------------------------------------
def _run_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    from keel.runtime.placement import parse_with

    for item in kwargs.get("executors") or ():
        parse_with(item)  # a bad --with is a usage error, before anything runs
    # @project's --branch/--production may also come before the command (Metaflow's place for them)
    ctx = click.get_current_context(silent=True)
    group = ctx.find_root().params if ctx is not None else {}
    branch = kwargs.get("branch") or group.get("branch")
    production = bool(kwargs.get("production") or group.get("production"))
    return {"max_workers": kwargs["max_workers"], "max_num_splits": kwargs["max_num_splits"],
            "tags": tuple(kwargs["tags"]), "executors": tuple(kwargs["executors"]), "quiet": kwargs["quiet"],
            "cache": kwargs.get("cache"),
            "branch": branch, "production": production, "run_id_file": kwargs.get("run_id_file")}


def run_id_writer(path: str | None) -> Any:
    """``--run-id-file PATH``: a callback that writes the new run's id there (None without a path)."""
    if not path:
        return None

    def write(run_id: int) -> None:
        with open(path, "w") as fh:
            fh.write(str(run_id))

    return write


def _given(flow_cls: type, kwargs: dict[str, Any]) -> dict[str, str]:
    """The parameters given on the command line, as text, by name."""
    from keel.flow.parameters import flow_parameters

    given = {}
    for i, name in enumerate(flow_parameters(flow_cls)):
        raw = kwargs.get(f"_param_{i}")
        if raw is None and kwargs.get(f"_param_{i}_off"):
            raw = "false"
        if raw is not None:
            given[name] = raw
    return given


def _config_args(flow_cls: type, given: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """Metaflow's ``--config NAME PATH`` and ``--config-value NAME JSON`` (given before the command):
    (config name -> path, config name -> value)."""
    import json

    from keel.flow.parameters import config_named

    ctx = click.get_current_context(silent=True)
    group = ctx.find_root().params if ctx is not None else {}
    files: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, path in group.get("config_files") or ():
        p = config_named(flow_cls, name)
        if p.name in given or p.name in files:
            raise UsageError(f"config {p.name!r} is given twice; give it once")
        files[p.name] = path
    for name, text in group.get("config_values") or ():
        p = config_named(flow_cls, name)
        if p.name in values:
            raise UsageError(f"config {p.name!r} is given twice; give it once")
        try:
            values[p.name] = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--config-value {p.name}: not JSON ({exc}): give e.g. "
                             f"--config-value {p.name} '{{\"lr\": 0.1}}'") from None
    return files, values


def run_command(flow_cls: type, flow_file: str, prog: str) -> click.Command:
    """``run``: the runtime's options and one option per Parameter of ``flow_cls``."""

    def callback(**kwargs: Any) -> int:
        with closing(StartupGC()) as startup:
            return _run(startup, **kwargs)

    def _run(startup: StartupGC, **kwargs: Any) -> int:
        from keel.flow.parameters import resolve_parameters
        from keel.runtime.entry import RunRequest, run
        from keel.runtime.scheduler import Options

        given = _given(flow_cls, kwargs)
        opts = RunOptions(**_run_options(kwargs), params=given)
        files, values = _config_args(flow_cls, given)
        params = resolve_parameters(flow_cls, {**opts.params, **files}, values)
        req = RunRequest(flow_cls=flow_cls, params=params, flow_file=flow_file, tags=list(opts.tags),
                         options=Options(max_workers=opts.max_workers, max_num_splits=opts.max_num_splits,
                                         cache=opts.cache),
                         quiet=opts.quiet, command=f"{prog} resume" if prog.startswith("python") else "",
                         executors=list(opts.executors), branch=opts.branch, production=opts.production)
        return exit_status(run(req, on_started=startup.started(run_id_writer(opts.run_id_file))))

    return _RunCommand("run", callback=callback, flow_cls=flow_cls, context_settings=_HELP,
                       params=[*_parameter_options(flow_cls), *_runtime_options()],
                       help=f"Run {flow_cls.__name__}: one --NAME VALUE option per parameter of the flow "
                            f"(help, type and default shown), then the runtime's own options. Configs: "
                            f"--config NAME PATH or --config-value NAME JSON before the command.",
                       short_help="run the flow")


def parse_run_args(flow_cls: type, args: list[str]) -> RunOptions:
    """The run options and the parameters given in ``args`` (e.g. what a sweep passes to every trial)."""
    cmd = run_command(flow_cls, "", "keel run")
    ctx = cmd.make_context("run", list(args))
    return RunOptions(**_run_options(ctx.params), params=_given(flow_cls, ctx.params))


def flow_cli(flow_cls: type, flow_file: str, prog: str) -> click.Group:
    """The click group of one flow: run, resume, show, check, logs, tag."""
    group = _FlowGroup(name=prog, prog=prog, context_settings=_HELP,
                       help=f"The commands of {flow_cls.__name__} ({os.path.basename(flow_file)}).",
                       params=[click.Option(["--no-pylint", "--quiet-pylint"], is_flag=True, hidden=True),
                               click.Option(["--branch"], default=None, metavar="BRANCH",
                                            help="@project: the branch of run and resume (test.BRANCH)"),
                               click.Option(["--production"], is_flag=True,
                                            help="@project: run and resume on the production branch"),
                               click.Option(["--config", "config_files"], nargs=2, multiple=True,
                                            metavar="NAME PATH",
                                            help="read the Config NAME from the file PATH (repeatable)"),
                               click.Option(["--config-value", "config_values"], nargs=2, multiple=True,
                                            metavar="NAME JSON",
                                            help="the Config NAME's value as JSON (repeatable)")])
    group.add_command(run_command(flow_cls, flow_file, prog))

    def resume(positional: tuple[str, ...], origin_run_id: str | None, **kwargs: Any) -> int:
        with closing(StartupGC()) as startup:
            return _resume(startup, positional, origin_run_id, **kwargs)

    def _resume(startup: StartupGC, positional: tuple[str, ...], origin_run_id: str | None, **kwargs: Any) -> int:
        from keel.cli.resume import cmd_resume

        root = click.get_current_context().find_root().params
        if root.get("config_files") or root.get("config_values"):
            raise UsageError("resume keeps the configs of the run it resumes (they are frozen with it); "
                             "--config and --config-value are for run")
        values = ([origin_run_id] if origin_run_id is not None else []) + list(positional)
        return cmd_resume(flow_cls, flow_file, values, RunOptions(**_run_options(kwargs)), prog, startup=startup)

    group.add_command(_ResumeCommand(
        "resume", callback=resume, flow_cls=flow_cls, context_settings=_HELP,
        params=[click.Argument(["positional"], nargs=-1, metavar="[RUN_ID] [STEP]"),
                *_runtime_options(resume=True)],
        help="A new run that reuses the tasks an earlier run finished (default: the latest run). "
             "With STEP, that step and every step after it run again.",
        short_help="resume a run, reusing what it finished"))

    def show() -> int:
        from keel.flow.graph import FlowGraph

        sys.stdout.write(FlowGraph(flow_cls).to_text().rstrip() + "\n")
        return 0

    group.add_command(_OneLineErrors("show", callback=show, context_settings=_HELP,
                                     help="Print the flow's graph.", short_help="print the flow's graph"))

    def check() -> int:
        from keel.flow.graph import FlowGraph

        FlowGraph(flow_cls).check()
        sys.stdout.write(f"{flow_cls.__name__}: the graph is valid.\n")
        return 0

    group.add_command(_OneLineErrors("check", callback=check, context_settings=_HELP,
                                     help="Check the flow's graph and report every problem at once.",
                                     short_help="check the graph"))
    group.add_command(logs_command(flow_cls.__name__))
    group.add_command(tag_command(flow_cls.__name__))
    return group


_TAG_ACTIONS = {  # action -> (its arguments, its help)
    "add": ("TAG...", "Add user tags to a run."),
    "remove": ("TAG...", "Remove user tags from a run (system tags such as user:NAME stay)."),
    "replace": ("OLD NEW", "Replace user tag OLD by NEW on a run."),
    "list": ("", "List a run's user and system tags."),
}


class _TagGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args:
            raise UsageError(f"tag needs an action: {', '.join(_TAG_ACTIONS)} (see: tag --help)")
        if args[0] not in _TAG_ACTIONS and not args[0].startswith("-"):
            raise UsageError(f"unknown tag action {args[0]!r}: use {', '.join(_TAG_ACTIONS)} (see: tag --help)")
        return super().parse_args(ctx, args)


def tag_command(flow: str) -> click.Command:
    """Metaflow's ``tag add|remove|replace|list [--run-id ID] TAG...`` (the latest run without
    ``--run-id``); system tags (user:NAME, project:NAME, ...) are listed but never removed."""
    group = _TagGroup("tag", context_settings=_HELP, short_help="change or list a run's tags",
                        help="Change or list a run's tags: tag add|remove TAG..., tag replace OLD NEW, "
                             "tag list; each takes --run-id ID (the latest run without it).")
    for action, (metavar, text) in _TAG_ACTIONS.items():
        def callback(run_id: str | None, tags: tuple[str, ...] = (), action: str = action) -> int:
            from keel.cli.tracking import cmd_flow_tag

            return cmd_flow_tag(flow, action, list(tags), run_id)

        params: list[click.Parameter] = [click.Option(["--run-id"], metavar="ID",
                                                      help="the run (default: the flow's latest run)")]
        if metavar:
            params.append(click.Argument(["tags"], nargs=-1, required=True, metavar=metavar))
        group.add_command(_OneLineErrors(action, callback=callback, params=params, context_settings=_HELP,
                                         help=f"{text} Without --run-id, the flow's latest run.",
                                         short_help=text.split(" (")[0].rstrip(".")))
    return group


def logs_command(flow: str | None) -> click.Command:
    """``logs RUN/STEP[/TASK]`` (``FLOW/RUN/STEP[/TASK]`` when ``flow`` is None)."""

    def logs(target: str, stderr: bool, follow: bool, raw: bool) -> int:
        from keel.cli.reading import show_logs

        return show_logs(flow or target.split("/", 1)[0], target, "stderr" if stderr else "stdout", follow, raw)

    return _LogsCommand("logs", callback=logs, context_settings=_HELP, params=[
        click.Argument(["target"], metavar="RUN/STEP[/TASK]" if flow else "FLOW/RUN/STEP[/TASK]"),
        click.Option(["--stderr"], is_flag=True, help="print stderr instead of stdout"),
        click.Option(["--follow", "-f"], is_flag=True, help="keep printing while the run goes"),
        click.Option(["--raw"], is_flag=True, help="print the bytes as written, escape sequences included")],
        help="Print a task's output (every task of the step when TASK is left out).",
        short_help="print a task's output")


def run_flow_cli(flow_cls: type, argv: list[str] | None = None, flow_file: str | None = None,
                 prog: str | None = None) -> NoReturn:
    """Entry point of ``FlowSpec.__init__`` in ``python flow.py COMMAND``: never returns."""
    from keel.runtime.console import protect_streams

    protect_streams()  # `python flow.py run | head -1`: printing stops, the run does not
    own_process()      # a run's start may pause and tune the collector (keel.cli.startup)
    argv = list(sys.argv[1:] if argv is None else argv)
    flow_file = flow_file or inspect.getsourcefile(flow_cls) or sys.argv[0]
    prog = prog or f"python {os.path.basename(flow_file)}"
    from keel.flow.loader import check_module_name

    try:
        check_module_name(flow_file)
    except UsageError as exc:
        print(f"keel: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(dispatch(flow_cls, flow_file, argv, prog))


def dispatch(flow_cls: type, flow_file: str, argv: list[str], prog: str) -> int:
    """Run one command of the flow's CLI; the exit status (bad input: one line on stderr, 2)."""
    return invoke(flow_cli(flow_cls, flow_file, prog), argv or ["--help"], prog)


def dispatch_command(flow_cls: type, flow_file: str, command: str, argv: list[str], prog: str) -> int:
    """Run one named command of the flow's CLI (``keel run flow.py ...``: ``prog`` is "keel run flow.py").
    Metaflow's ``--config NAME PATH`` and ``--config-value NAME JSON``, which ``python flow.py`` takes
    before the command, may come anywhere after the flow file here."""
    group = flow_cli(flow_cls, flow_file, prog)
    front, rest = _hoist_config_args(flow_cls, argv) if command == "run" else ([], argv)
    if front:
        return invoke(group, [*front, command, *rest], prog)
    return invoke(group.commands[command], argv, prog)


def _hoist_config_args(flow_cls: type, argv: list[str]) -> tuple[list[str], list[str]]:
    """(the ``--config NAME PATH``/``--config-value NAME JSON`` in ``argv``, the rest). ``--config X``
    alone, with X no Config's name, is the parameter option of a Config called ``config``."""
    from keel.flow.parameters import Config, flow_parameters

    names = {n for p in flow_parameters(flow_cls).values() if isinstance(p, Config) for n in (p.name, p.attr)}
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        pair = argv[i + 1:i + 3]
        if arg == "--config-value" or (arg == "--config" and len(pair) == 2 and pair[0] in names
                                       and not pair[1].startswith("-")):
            if len(pair) < 2:
                raise UsageError(f"{arg} needs a config name and a value: {arg} NAME "
                                 f"{'JSON' if arg == '--config-value' else 'PATH'}")
            front += [arg, *pair]
            i += 3
            continue
        if arg == "--":
            rest += argv[i:]
            break
        rest.append(arg)
        i += 1
    return front, rest


class _AnyFlow:
    """Stands for the flow in ``keel run --help`` before a flow file is named."""


def generic_help(command: str) -> str:
    """``keel run --help`` / ``keel resume --help``: the runtime's options; a flow file's own
    ``--help`` (``keel run flow.py --help``) adds its parameters."""
    cmd = run_command(_AnyFlow, "", "keel") if command == "run" else flow_cli(_AnyFlow, "", "keel").commands[command]
    pick = " --flow CLASS picks the flow class of a file that has several."
    cmd.help = {"run": "Run a flow: keel run FLOW_FILE [--flow CLASS] [--PARAM VALUE]... [OPTIONS]. "
                       "keel run FLOW_FILE --help lists the flow's parameters." + pick,
                "resume": "Resume a run: keel resume FLOW_FILE [RUN_ID] [STEP] [OPTIONS], or "
                          "keel resume FLOW/RUN [STEP] [OPTIONS]: a new run that reuses what it finished." + pick,
                "check": "Check a flow's graph and report every problem: keel check FLOW_FILE." + pick,
                }.get(command, cmd.help)
    with click.Context(cmd, info_name=f"keel {command} FLOW_FILE") as ctx:
        return cmd.get_help(ctx)


def invoke(cmd: click.Command, argv: list[str], prog: str) -> int:
    """Run a click command with Keel's error handling: the exit status."""
    try:
        code = cmd.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except UsageError as exc:
        fail(str(exc), 2)
    except KeelError as exc:
        fail(str(exc), 1)
    except click.ClickException as exc:
        fail(exc.format_message(), 2)
    except click.exceptions.Abort:
        return 130
    return int(code or 0)


def exit_status(result: Any) -> int:
    """0 for a run that succeeded, 130 for an interrupted one, 1 otherwise."""
    from keel.runtime.entry import exit_status as status

    return status(result)
