"""The ``keel`` command. Thin: it parses arguments and calls the packages that do the work.

    keel run flow.py [--PARAM VALUE]...      keel runs [FLOW]
    keel resume flow.py [RUN] [STEP]         keel show FLOW/RUN | flow.py
    keel logs flow.py RUN/STEP[/TASK]        keel compare FLOW/RUN FLOW/RUN...
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import click

from keel.cli.types import COUNT
from keel.errors import KeelError, UsageError


def _guard(fn: Callable[[], int]) -> None:
    """Run a command; a Keel error becomes a one-line message and exit 2 (usage) or 1."""
    try:
        code = fn()
    except UsageError as exc:
        click.echo(f"keel: {exc}", err=True)
        sys.exit(2)
    except KeelError as exc:
        click.echo(f"keel: {exc}", err=True)
        sys.exit(1)
    sys.exit(code or 0)


def _flow_command(command: str, args: tuple[str, ...] | list[str]) -> None:
    """``keel COMMAND FLOW_FILE ...``: load the file, then the flow's own click command."""
    from keel.cli.flow_cli import dispatch_command, generic_help
    from keel.flow.loader import load_flow_file

    rest = list(args)
    if not rest or rest[0] in ("-h", "--help"):
        click.echo(generic_help(command))
        sys.exit(0 if rest else 2)
    flow_file = rest.pop(0)

    def go() -> int:
        # --flow CLASS is read before the flow's own click command exists: it picks the class
        # whose parameters that command is built from (keel run --help lists it).
        flow_name = None
        for i, arg in enumerate(rest):
            if arg == "--flow" or arg.startswith("--flow="):
                flow_name = arg.partition("=")[2] if "=" in arg else (rest[i + 1] if i + 1 < len(rest) else "")
                if not flow_name:
                    raise UsageError("--flow needs a flow class name, e.g. --flow TrainFlow")
                del rest[i:i + (1 if "=" in arg else 2)]
                break
        flow_cls = load_flow_file(flow_file, flow_name)
        return dispatch_command(flow_cls, flow_file, command, rest, prog=f"keel {command} {flow_file}")

    _guard(go)


_FLOW_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keel")
def cli() -> None:
    """Keel: machine-learning pipelines, run locally or on a cluster, every run tracked."""


@cli.command(context_settings=_FLOW_ARGS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(args: tuple[str, ...]) -> None:
    """Run a flow: keel run FLOW_FILE [--PARAM VALUE]... (keel run FLOW_FILE --help lists them)."""
    _flow_command("run", args)


@cli.command(context_settings=_FLOW_ARGS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def resume(args: tuple[str, ...]) -> None:
    """Resume a run: keel resume FLOW_FILE [RUN] [STEP], or keel resume FLOW/RUN [STEP]."""
    target = args[0] if args else ""
    if not target or target.startswith("-") or target.endswith(".py") or os.path.isfile(target):
        _flow_command("resume", args)
        return

    def find_file() -> int:
        from keel.cli.reading import resolve_run

        _, record = resolve_run(target)
        if record.kind == "project":  # keel resume PROJECT/RUN: keel project resume -f ITS_FILE RUN
            project_file = record.environment.get("project_file") or "keel.yaml"
            if not os.path.isfile(project_file):
                raise UsageError(f"the project file of {target} ({project_file}) is gone; "
                                 f"run: keel project resume -f path/to/keel.yaml {record.run_id}")
            from keel.cli.project import project

            return project.main(["resume", "-f", project_file, str(record.run_id), *args[1:]],
                                prog_name="keel project", standalone_mode=False) or 0
        flow_file = record.environment.get("flow_file")
        if not flow_file or not os.path.isfile(flow_file):
            raise UsageError(f"the flow file of {target} ({flow_file or 'unknown'}) is gone; "
                             f"run: keel resume path/to/flow.py {record.run_id}")
        _flow_command("resume", (flow_file, str(record.run_id), *args[1:]))
        return 0

    _guard(find_file)


@cli.command(context_settings=_FLOW_ARGS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check(args: tuple[str, ...]) -> None:
    """Check a flow's graph and report every problem: keel check FLOW_FILE."""
    _flow_command("check", args)


@cli.command(context_settings=_FLOW_ARGS, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def logs(args: tuple[str, ...]) -> None:
    """Print a task's output: keel logs FLOW/RUN/STEP[/TASK] [--stderr] [--follow], or keel logs FLOW_FILE RUN/STEP."""
    target = args[0] if args else ""
    if target.endswith(".py") or (os.path.isfile(target) and not target.startswith("-")):
        _flow_command("logs", args)
        return
    from keel.cli.flow_cli import invoke, logs_command

    sys.exit(invoke(logs_command(None), list(args), "keel logs"))


@cli.command()
@click.argument("target")
def show(target: str) -> None:
    """Show a run (keel show FLOW/RUN) or a flow's graph (keel show flow.py)."""
    if target.endswith(".py") or os.path.isfile(target):
        _flow_command("show", (target,))
        return
    from keel.cli.reading import cmd_show_run

    _guard(lambda: cmd_show_run(target))


@cli.command()
@click.argument("flow", required=False)
@click.option("--limit", default=50, show_default=True, type=COUNT,
              help="show at most this many runs (1 or more)")
@click.option("--json", "as_json", is_flag=True, help="print JSON for tools")
@click.option("--where", default=None, help='filter, e.g. "params.alpha > 0.3 and metrics.acc >= 0.9"')
@click.option("--sort", default=None, help="sort keys, e.g. -metrics.acc,created (- for descending)")
def runs(flow: str | None, limit: int, as_json: bool, where: str | None, sort: str | None) -> None:
    """List runs, newest first (of one flow, or all); search them with --where and --sort."""
    if where is not None or sort is not None:
        from keel.cli.tracking import cmd_search_runs

        _guard(lambda: cmd_search_runs(flow, where, sort, limit, as_json))
    from keel.cli.reading import cmd_runs

    _guard(lambda: cmd_runs(flow, limit, as_json))


@cli.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON for tools")
@click.option("--csv", "as_csv", is_flag=True, help="print CSV for tools")
def compare(runs: tuple[str, ...], as_json: bool, as_csv: bool) -> None:
    """Compare runs side by side: parameters, last metric values, durations."""
    from keel.cli.reading import cmd_compare

    if as_json and as_csv:
        click.echo("keel: choose one of --json and --csv", err=True)
        sys.exit(2)
    _guard(lambda: cmd_compare(list(runs), as_json, as_csv))


# Projects (keel.yaml): keel project run|validate, keel scheduler, keel schedule list.
from keel.cli.project import register as _register_project  # noqa: E402

_register_project(cli)


from keel.cli.tracking import register as _register_tracking  # noqa: E402 - tag, comment, sweep, ...

_register_tracking(cli)
from keel.cli.data import register as _register_data  # noqa: E402 - keel data list|show|history|sql

_register_data(cli)

from keel.cli.serve import register as _register_serve  # noqa: E402 - serve, project serve

_register_serve(cli)

from keel.cli.ui import ui as _ui  # noqa: E402 - keel ui, the dashboard

cli.add_command(_ui)

from keel.cli.queue import register as _register_queue  # noqa: E402 - keel queue list|peek|purge

_register_queue(cli)

from keel.cli.cache import register as _register_cache  # noqa: E402 - cache explain, cache prune

_register_cache(cli)

from keel.cli.cards import register as _register_cards  # noqa: E402 - keel card view

_register_cards(cli)

from keel.cli.alerts import register as _register_alerts  # noqa: E402 - keel alerts list|test|watch

_register_alerts(cli)

from keel.cli.store import register as _register_store  # noqa: E402 - keel store verify [--repair]

_register_store(cli)


def main(argv: list[str] | None = None) -> Any:
    from keel.runtime.console import protect_streams

    protect_streams()  # `keel ... | head -1`, a closed stdout: printing stops, the command does not
    if argv is None:   # the `keel` script itself, not a caller in its own process
        from keel.cli.startup import own_process

        own_process()
    try:
        return cli.main(args=argv, prog_name="keel", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # bad input: one line, exit 2 (as Keel's own UsageError)
        click.echo(f"keel: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)


if __name__ == "__main__":
    main()
