"""Experiment-tracking commands: ``tag``, ``comment``, ``sweep``, ``reproduce``, ``export``, and
the search behind ``keel runs FLOW --where ... --sort ...``.

    keel runs Train --where "params.alpha > 0.3 and metrics.acc >= 0.9" --sort -metrics.acc --limit 20
    keel tag Train/3 baseline best [--remove]
    keel comment Train/3 "lr too high: diverged at step 300"
    keel sweep train.py --param alpha=0.1,0.2,0.3 --param depth=2:8 --parallel 4
    keel sweep train.py --param lr=1e-4:1e-1:log --optuna 20 --objective metrics.acc --direction max
    keel reproduce Train/3
    keel export Train/3 --format json [-o run.json]

``register(cli)`` adds them to the ``keel`` group (see ``keel.cli.main``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from keel.cli.text import plain
from keel.errors import NotFoundError, UsageError
from keel.tracking.jsonsafe import dumps as json_dumps


def _store() -> Any:
    from keel.store import Store

    return Store.from_env()


# -- keel runs --where/--sort -------------------------------------------------------------------
def cmd_search_runs(flow: str | None, where: str | None, sort: str | None, limit: int, as_json: bool) -> int:
    from keel.cli.reading import _console, _seconds, _short, _status, _when, runs_table
    from keel.errors import NotFoundError
    from keel.tracking.query import Query
    from keel.tracking.search import field_value, last_metrics, search_runs

    query = Query(where, sort)
    md = _store().metadata
    records = search_runs(md, flow, query=query, limit=limit or None)
    if flow is not None and not records and flow not in md.runs.list_flows():
        known = ", ".join(md.runs.list_flows()) or "none yet"
        raise NotFoundError(f"no runs of flow {flow!r}; flows with runs: {known}")
    columns = query.columns()
    metric_names = [c.split(".", 1)[1] for c in columns if c.startswith("metrics.")]
    last = last_metrics(md, records, metric_names)
    if as_json:
        print(json_dumps([{"pathspec": r.pathspec, "status": r.effective_status, "created_at": r.created_at,
                           "finished_at": r.finished_at, "params": r.params, "tags": r.tags,
                           "metrics": last.get((r.flow, r.run_id), {})} for r in records], indent=2))
        return 0
    if not records:
        print("No runs match." if where else "No runs yet. Start one with: python flow.py run")
        return 0
    table = runs_table(records, columns)
    for r in records:
        values = [field_value(r, c, last) for c in columns]
        shown = [f"{v:g}" if isinstance(v, float) else "-" if v is None else _short(v, 20) for v in values]
        params = " ".join(f"{k}={_short(v, 20)}" for k, v in r.params.items() if f"params.{k}" not in columns)
        table.add_row(r.pathspec, _status(r.effective_status), _when(r.created_at),
                      _seconds(r.created_at, r.finished_at), *shown, params, ",".join(r.tags))
    _console().print(table)  # the same layout as keel runs without --where
    return 0


def _wide_console() -> Any:
    """A console that does not squeeze columns to 80 characters when the output is a pipe or a file."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 240)


# -- tag and comment ------------------------------------------------------------------------------
def _check_tag(tag: str) -> str:
    from keel.flow.tags import check_tag

    return check_tag(tag)


def cmd_tag(pathspec: str, tags: list[str], remove: bool) -> int:
    from keel.cli.reading import resolve_run

    md, r = resolve_run(pathspec)
    if not tags:
        raise UsageError(f"give the tags to {'remove' if remove else 'add'}, e.g. keel tag {r.pathspec} baseline")
    tags = [_check_tag(t) for t in tags]
    if remove:
        missing = [t for t in tags if t not in r.tags]
        md.annotations.remove_tags(r.flow, r.run_id, tags)
        if missing:
            print(f"{r.pathspec} had no tag {', '.join(missing)}", file=sys.stderr)
    else:
        md.annotations.add_tags(r.flow, r.run_id, tags)
    now = md.runs.get_run(r.flow, r.run_id)
    print(f"{r.pathspec} tags: {plain(', '.join(now.tags)) if now and now.tags else '(none)'}")
    return 0


def cmd_flow_tag(flow: str, action: str, tags: list[str], run_id: str | None) -> int:
    """Metaflow's ``python flow.py tag add|remove|replace|list [--run-id ID] TAG...``."""
    from keel.cli.reading import resolve_run

    if run_id is None:
        from keel.store import Store

        latest = Store.from_env().metadata.runs.latest_run_id(flow)
        if latest is None:
            raise NotFoundError(f"{flow} has no run to tag yet; start one with: run")
        run_id = str(latest)
    md, r = resolve_run(f"{flow}/{run_id.rsplit('/', 1)[-1]}")
    system = {t for t, is_system in md.annotations.tag_kinds(r.flow, r.run_id).items() if is_system}
    if action == "list":
        print(f"{r.pathspec} user tags: {', '.join(r.tags) or '(none)'}")
        print(f"{r.pathspec} system tags: {', '.join(sorted(system)) or '(none)'}")
        return 0
    if action == "replace":
        if len(tags) != 2:
            raise UsageError(f"tag replace takes OLD NEW, got {len(tags)} tag(s)")
        tags_to_remove, tags = [tags[0]], [tags[1]]
    else:
        tags_to_remove = tags if action == "remove" else []
    if system & set(tags_to_remove):
        raise UsageError(f"{sorted(system & set(tags_to_remove))[0]!r} is a system tag of {r.pathspec}; "
                         f"only user tags can be removed")
    if tags_to_remove:
        cmd_tag(r.pathspec, tags_to_remove, remove=True)
    if action != "remove":
        cmd_tag(r.pathspec, tags, remove=False)
    return 0


def cmd_comment(pathspec: str, text: str | None, author: str | None) -> int:
    from keel.cli.reading import _when, resolve_run

    md, r = resolve_run(pathspec)
    if text is None:
        comments = md.annotations.list_comments(r.flow, r.run_id)
        if not comments:
            print(f"{r.pathspec} has no comments. Add one with: keel comment {r.pathspec} \"TEXT\"")
        for c in comments:
            print(f"{_when(c['created_at'])}  {plain(c['author'])}: {plain(c['text'], multiline=True)}")
        return 0
    if not text.strip():
        raise UsageError(f"the comment is empty; e.g. keel comment {r.pathspec} \"lr too high: diverged\"")
    c = md.annotations.add_comment(r.flow, r.run_id, text, author=author)
    print(f"Comment {c['id']} added to {r.pathspec} by {plain(c['author'])}")
    return 0


# -- export ---------------------------------------------------------------------------------------
def cmd_export(pathspec: str, fmt: str, output: str | None, force: bool = False) -> int:
    from keel.cli.output import check_target, write_text
    from keel.client.core import parse_pathspec
    from keel.tracking.export import dumps, export_run

    if fmt != "json":
        raise UsageError(f"--format {fmt}: the export formats are: json")
    flow, run_id = parse_pathspec(pathspec, 2)
    check_target(output or "-", force=force)  # refuse a bad -o before building the export
    text = dumps(export_run(_store(), flow, int(run_id))) + "\n"
    if write_text(output or "-", text, force=force):
        print(f"Wrote {flow}/{run_id} to {output} ({len(text):,} bytes)", file=sys.stderr)
    return 0


# -- reproduce ------------------------------------------------------------------------------------
def cmd_reproduce(pathspec: str, as_json: bool, quiet: bool, keep: bool) -> int:
    from keel.client.core import parse_pathspec
    from keel.tracking.reproduce import dumps, format_report, reproduce

    flow, run_id = parse_pathspec(pathspec, 2)
    if not as_json:
        print(f"Reproducing {flow}/{run_id} from its code snapshot, with the same parameters", file=sys.stderr)
    report = reproduce(_store(), flow, int(run_id), quiet=quiet or as_json, keep=keep)
    print(dumps(report) if as_json else format_report(report))
    return 0 if report.status == "succeeded" else 1


# -- sweep ----------------------------------------------------------------------------------------
def sweep_options(flow_file: str, params: tuple[str, ...], objective: str | None, direction: str,
                  random_n: int | None, optuna_n: int | None, parallel: int, seed: int | None, top: int,
                  flow_name: str | None) -> Any:
    """The sweep's options from its click options, checked (one-line UsageErrors)."""
    from keel.tracking.sweep import SweepOptions, check_objective, parse_space

    opts = SweepOptions(flow_file=flow_file, spaces=[parse_space(p) for p in params], random=random_n,
                        optuna=optuna_n, objective=objective, direction=direction[:3], parallel=parallel,
                        seed=seed, top=top, flow_name=flow_name)
    if not opts.spaces:
        raise UsageError("a sweep needs at least one --param NAME=SPACE, e.g. --param alpha=0.1,0.2,0.3")
    names = [s.name for s in opts.spaces]
    if len(set(names)) != len(names):
        raise UsageError(f"--param {next(n for n in names if names.count(n) > 1)} is given twice")
    if opts.random and opts.optuna:
        raise UsageError("choose one of --random N and --optuna N")
    if opts.optuna and not opts.objective:
        raise UsageError("--optuna needs an --objective to optimize, e.g. --objective metrics.acc --direction max")
    check_objective(opts.objective)
    return opts


def cmd_sweep(opts: Any, extra: list[str]) -> int:
    """``extra``: the run options and fixed parameters given to every trial."""
    from keel.cli.flow_cli import parse_run_args
    from keel.flow.loader import load_flow_file
    from keel.flow.parameters import flow_parameters
    from keel.tracking.sweep import Sweep

    flow_cls = load_flow_file(opts.flow_file, opts.flow_name)
    run = parse_run_args(flow_cls, extra)  # the flow's own run options: same names, same checks
    opts.fixed, opts.max_workers, opts.max_num_splits = dict(run.params), run.max_workers, run.max_num_splits
    opts.executors, opts.tags = list(run.executors), [_check_tag(t) for t in run.tags]
    if not any(a.split("=")[0] == "--max-workers" for a in extra):
        opts.max_workers = None  # the sweep shares the cores among the trials running at once
    known = flow_parameters(flow_cls)
    for s in opts.spaces:
        if s.name not in known and s.name.replace("_", "-") not in known and s.name.replace("-", "_") not in known:
            import difflib

            hint = difflib.get_close_matches(s.name, list(known), n=1)
            guess = f" Did you mean {hint[0]}?" if hint else ""
            raise UsageError(f"--param {s.name}: {flow_cls.__name__} has no parameter {s.name!r}.{guess} "
                             f"Its parameters are: {', '.join(known) or 'none'}")
    import dataclasses

    for i, s in enumerate(opts.spaces):  # 0:1 for a float parameter is a float range
        param = known.get(s.name) or known.get(s.name.replace("_", "-")) or known.get(s.name.replace("-", "_"))
        if s.integer and param is not None and param.type is float:
            opts.spaces[i] = dataclasses.replace(s, integer=False)
    if opts.random is None and opts.optuna is None:
        for s in opts.spaces:
            s.grid()  # a continuous range without a step is refused before anything runs
    store = _store()
    sweep = Sweep(opts, store, flow_cls.__name__, say=lambda text: print(text, flush=True))
    try:
        ranked = sweep.run()
    except KeyboardInterrupt:
        print(f"Sweep {sweep.id} interrupted; finished trials are tagged {sweep.tag}", file=sys.stderr)
        return 130
    _print_best(sweep, ranked, opts)
    return 0 if any(t.status == "succeeded" for t in ranked) else 1


def _print_best(sweep: Any, ranked: list[Any], opts: Any) -> None:
    from rich.table import Table

    ok = [t for t in ranked if t.status == "succeeded"]
    failed = len(ranked) - len(ok)
    title = (f"Best trials by {opts.objective} ({opts.direction})" if opts.objective else "Trials")
    table = Table(box=None, header_style="bold", title=title, title_justify="left")
    for col in ("#", "run", *[s.name for s in opts.spaces], *([opts.objective] if opts.objective else []), "status"):
        table.add_column(col)
    shown = (ok[:opts.top] if opts.objective else ranked)
    for rank, t in enumerate(shown, start=1):
        obj = [f"{t.objective:g}" if t.objective is not None else "-"] if opts.objective else []
        table.add_row(str(rank if opts.objective else t.number),
                      f"{sweep.flow}/{t.run_id}" if t.run_id else "-",
                      *[t.params.get(s.name, "") for s in opts.spaces], *obj, t.status)
    print()
    _wide_console().print(table)
    where = f"\"{sweep.tag}\" in tags"
    sort = f" --sort {'-' if opts.direction == 'max' else ''}{opts.objective}" if opts.objective else ""
    print(f"\n{len(ok)} of {len(ranked)} trials succeeded" + (f", {failed} failed" if failed else "")
          + f". All of them: keel runs {sweep.flow} --where '{where}'{sort}")


# -- registration ---------------------------------------------------------------------------------
_PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]}


def register(cli: click.Group) -> None:
    """Add the tracking commands to the ``keel`` group."""
    from keel.cli.main import _guard

    @cli.command()
    @click.argument("run")
    @click.argument("tags", nargs=-1)
    @click.option("--remove", is_flag=True, help="remove these tags instead of adding them")
    def tag(run: str, tags: tuple[str, ...], remove: bool) -> None:
        """Add (or --remove) tags of a run: keel tag FLOW/RUN TAG..."""
        _guard(lambda: cmd_tag(run, list(tags), remove))

    @cli.command()
    @click.argument("run")
    @click.argument("text", required=False)
    @click.option("--author", default=None, help="who writes it (default: KEEL_USER or the login name)")
    def comment(run: str, text: str | None, author: str | None) -> None:
        """Comment on a run: keel comment FLOW/RUN "TEXT" (without TEXT: list its comments)."""
        _guard(lambda: cmd_comment(run, text, author))

    @cli.command()
    @click.argument("run")
    @click.option("--format", "fmt", default="json", show_default=True, help="json")
    @click.option("-o", "--output", default=None, help="write to this file instead of standard output (- = stdout)")
    @click.option("--force", is_flag=True, help="with -o: replace the file if it exists")
    def export(run: str, fmt: str, output: str | None, force: bool) -> None:
        """Everything about a run, for other tools: keel export FLOW/RUN --format json."""
        _guard(lambda: cmd_export(run, fmt, output, force))

    @cli.command()
    @click.argument("run")
    @click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
    @click.option("--quiet", "-q", is_flag=True, help="do not show the new run's progress")
    @click.option("--keep", is_flag=True, help="keep the unpacked snapshot folder")
    def reproduce(run: str, as_json: bool, quiet: bool, keep: bool) -> None:
        """Run a run's code snapshot again with the same parameters and compare the artifacts."""
        _guard(lambda: cmd_reproduce(run, as_json, quiet, keep))

    @cli.command(context_settings=_PASS)
    @click.argument("flow_file", type=click.Path())
    @click.option("--param", "params", multiple=True, metavar="NAME=SPACE",
                  help="a parameter and its values: a,b,c | 2:8 (integers) | 0.1:0.5:0.1 (a step) | "
                       "0.0:1.0 or 1e-4:1e-1:log (continuous; --random and --optuna only)")
    @click.option("--objective", default=None, metavar="metrics.NAME|duration", help="what ranks the trials")
    @click.option("--direction", default="max", show_default=True,
                  type=click.Choice(["max", "min", "maximize", "minimize"]), help="best is the largest or smallest")
    @click.option("--random", "random_n", type=click.IntRange(min=1), default=None, metavar="N",
                  help="N trials sampled at random")
    @click.option("--optuna", "optuna_n", type=click.IntRange(min=1), default=None, metavar="N",
                  help="N trials chosen by Optuna (needs --objective)")
    @click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True,
                  help="trials running at once")
    @click.option("--seed", type=click.IntRange(min=0), default=None, help="seed of the random and Optuna samplers")
    @click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="best trials shown")
    @click.option("--flow", "flow_name", default=None, metavar="CLASS", help="the flow class, if the file has several")
    @click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
    def sweep(flow_file: str, params: tuple[str, ...], objective: str | None, direction: str,
              random_n: int | None, optuna_n: int | None, parallel: int, seed: int | None, top: int,
              flow_name: str | None, run_args: tuple[str, ...]) -> None:
        """Hyperparameter sweep: keel sweep flow.py --param alpha=0.1,0.2 --param depth=2:8 --parallel 4.

        Other options (the flow's parameters, e.g. --epochs 3, and run options such as --tag T or
        --max-workers N) are given to every trial."""
        _guard(lambda: cmd_sweep(sweep_options(flow_file, params, objective, direction, random_n, optuna_n,
                                               parallel, seed, top, flow_name), list(run_args)))
