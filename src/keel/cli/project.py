"""Project commands: ``keel project run|validate``, ``keel scheduler``, ``keel schedule list``.

    keel project validate [-f keel.yaml]
    keel project run [-f keel.yaml] [--job NAME]... [--with-deps | --downstream]
    keel scheduler [-f keel.yaml]
    keel schedule list [-f keel.yaml]
"""

from __future__ import annotations

import os
from typing import Any

import click

_FILE = click.option("-f", "--file", "path", default="keel.yaml", show_default=True, metavar="PATH",
                     help="the project file")


def load(path: str, *, flows: bool = True) -> Any:
    """The checked project at ``path``; a missing file is a usage error (exit 2)."""
    from keel.errors import UsageError
    from keel.flow.project import load_project

    if not os.path.isfile(path):
        raise UsageError(f"no project file {path} in {os.getcwd()}; create one (see `keel project --help`) "
                         f"or give its path with -f PATH")
    loader = None
    if flows:
        from keel.flow.loader import load_flow_file

        loader = load_flow_file
    return load_project(path, flow_loader=loader)


@click.group()
def project() -> None:
    """Projects (keel.yaml): jobs that are scripts or flows, chained, parallel, scheduled."""


@project.command()
@_FILE
def validate(path: str) -> None:
    """Check the project file and report every problem with its file and line."""
    from keel.cli.main import _guard

    def go() -> int:
        from keel.flow.project import list_names
        from keel.runtime.executors.local import machine_budget
        from keel.runtime.project import check_job_resources

        proj = load(path)
        check_job_resources(proj, machine_budget())  # what `keel project run` would refuse here
        click.echo(f"{path}: project {proj.name} is valid ({len(proj.jobs)} job(s): {list_names(proj.order())}).")
        return 0

    _guard(go)


@project.command("run")
@_FILE
@click.option("--job", "jobs", multiple=True, metavar="NAME", help="run only this job (repeatable)")
@click.option("--with-deps", is_flag=True, help="with --job: run the jobs it needs first")
@click.option("--downstream", is_flag=True, help="with --job: also run the jobs that need it")
@click.option("--max-workers", default=16, show_default=True, type=click.IntRange(min=1),
              help="job instances running at once, at most")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="tag the run (repeatable)")
@click.option("--quiet", "-q", is_flag=True, help="print only the jobs' output and the result")
@click.option("--with", "executors", multiple=True, metavar="ray[:address=...]",
              help="run the script jobs on a Ray cluster (command tasks on Ray workers)")
@click.option("--cache/--no-cache", default=None,
              help="--cache: reuse every job's result from an earlier run with the same key (not only "
                   "jobs with cache: true); --no-cache: run every job")
def run_cmd(path: str, jobs: tuple[str, ...], with_deps: bool, downstream: bool, max_workers: int,
            tags: tuple[str, ...], quiet: bool, executors: tuple[str, ...], cache: bool | None) -> None:
    """Run the project's jobs in dependency order, independent jobs at the same time."""
    from keel.cli.main import _guard
    from keel.errors import UsageError

    def go() -> int:
        from keel.runtime.entry import ProjectRequest, exit_status, run
        from keel.runtime.project import ProjectRunOptions

        if (with_deps or downstream) and not jobs:
            raise UsageError("--with-deps and --downstream go with --job NAME; without --job every job runs")
        proj = load(path)
        options = ProjectRunOptions(jobs=list(jobs) or None, with_deps=with_deps, downstream=downstream,
                                    max_workers=max_workers, tags=list(tags), quiet=quiet,
                                    executors=list(executors), cache=cache)

        return exit_status(run(ProjectRequest(proj, options)))

    _guard(go)


@project.command("resume")
@_FILE
@click.argument("run_id", required=False, metavar="[RUN_ID]")
@click.option("--max-workers", default=16, show_default=True, type=click.IntRange(min=1),
              help="job instances running at once, at most")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="tag the run (repeatable)")
@click.option("--quiet", "-q", is_flag=True, help="print only the jobs' output and the result")
def resume_cmd(path: str, run_id: str | None, max_workers: int, tags: tuple[str, ...], quiet: bool) -> None:
    """A new run of a project run's jobs (default: the latest run) that takes every job that finished
    in it and runs the failed, skipped and unfinished ones."""
    from keel.cli.main import _guard

    def go() -> int:
        from keel.ids import parse_id
        from keel.runtime.entry import ProjectRequest, exit_status, run
        from keel.runtime.project import ProjectRunOptions

        origin = parse_id(run_id, "RUN_ID") if run_id is not None else 0  # 0: the latest
        proj = load(path)
        options = ProjectRunOptions(max_workers=max_workers, tags=list(tags), quiet=quiet, resume=origin)
        return exit_status(run(ProjectRequest(proj, options)))

    _guard(go)


@click.command()
@_FILE
def scheduler(path: str) -> None:
    """Run the project's schedules in the foreground until SIGTERM or Ctrl-C."""
    from keel.cli.main import _guard

    def go() -> int:
        from keel.schedule.cron import CronScheduler

        from keel.errors import UsageError

        proj = load(path)
        if not proj.scheduled:
            raise UsageError(f"{path}: project {proj.name} has no scheduled jobs, so the scheduler would have "
                             f"nothing to do; give a job a schedule, e.g. schedule: \"0 * * * *\"")
        return CronScheduler(proj).run()

    _guard(go)


@click.group()
def schedule() -> None:
    """The project's schedules."""


@schedule.command("list")
@_FILE
def list_cmd(path: str) -> None:
    """Every scheduled job with its last and next fire time and its last run's status."""
    from keel.cli.main import _guard

    def go() -> int:
        from rich.console import Console
        from rich.table import Table

        from keel.schedule.cron import schedule_rows, when
        from keel.store import Store

        proj = load(path, flows=False)
        rows = schedule_rows(proj, Store.from_env())
        if not rows:
            click.echo(f"project {proj.name} has no scheduled jobs; give a job schedule: \"0 * * * *\"")
            return 0
        table = Table(box=None, header_style="bold")
        for col in ("job", "schedule", "runs", "last fire", "last run", "status", "next fire"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.job, r.schedule + (" (overlap)" if r.overlap else ""), ", ".join(r.jobs),
                          when(r.last_fire), r.last_run or "-", r.last_status or "-", when(r.next_fire))
        Console(highlight=False, soft_wrap=False, width=200).print(table)
        return 0

    _guard(go)


def register(cli: click.Group) -> None:
    """Add the project commands to the ``keel`` group."""
    cli.add_command(project)
    cli.add_command(scheduler)
    cli.add_command(schedule)
