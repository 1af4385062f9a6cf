"""Commands that read the store: ``runs``, ``show FLOW/RUN``, ``compare``, ``logs``."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from typing import Any

from keel.cli.text import markup as _m
from keel.cli.text import plain as _plain
from keel.errors import NotFoundError, UsageError, clip
from keel.tracking.jsonsafe import dumps as json_dumps


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _seconds(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    d = b - a
    return f"{d * 1000:.0f}ms" if d < 1 else f"{d:.2f}s" if d < 60 else f"{d / 60:.1f}m"


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _short(value: Any, width: int = 40) -> str:
    if isinstance(value, float):  # nan, inf, -inf as Python writes them (and the JSON output spells them)
        text = repr(value)
    else:
        text = json.dumps(value, default=repr) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_runs(flow: str | None, limit: int, as_json: bool) -> int:
    from keel.store import Store

    md = Store.from_env().metadata
    records = md.runs.list_runs(flow, limit=limit)
    if flow is not None and not records and flow not in md.runs.list_flows():
        known = ", ".join(md.runs.list_flows()) or "none yet"
        raise NotFoundError(f"no runs of flow {flow!r}; flows with runs: {known}")
    if as_json:
        print(json_dumps([{"pathspec": r.pathspec, "status": r.effective_status, "created_at": r.created_at,
                          "finished_at": r.finished_at, "params": r.params, "tags": r.tags} for r in records],
                         indent=2))
        return 0
    table = runs_table(records, ())
    for r in records:
        params = " ".join(f"{k}={_short(v, 20)}" for k, v in r.params.items())
        table.add_row(_m(r.pathspec), _status(r.effective_status), _when(r.created_at),
                      _seconds(r.created_at, r.finished_at), _m(params), _m(",".join(r.tags)))
    if not records:
        print("No runs yet. Start one with: python flow.py run")
        return 0
    _console().print(table)
    return 0


def runs_table(records: list[Any], extra: tuple[str, ...] | list[str]) -> Any:
    """The table of ``keel runs`` (with or without --where): one line per run whatever the width;
    the run id is never cut, long values are (the full value is in ``keel show`` and ``--json``)."""
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    widest = max((len(r.pathspec) for r in records), default=3)
    table.add_column("run", no_wrap=True, min_width=widest)
    table.add_column("status", no_wrap=True, min_width=max((len(r.effective_status) for r in records), default=6))
    table.add_column("started", no_wrap=True, min_width=19)
    table.add_column("duration", no_wrap=True, min_width=8)
    for col in extra:  # the fields the query names: their headers are never cut
        table.add_column(col, no_wrap=True, overflow="ellipsis", min_width=len(col), ratio=1)
    for col in ("params", "tags"):  # what is left of the width, shared; cut with an ellipsis
        table.add_column(col, no_wrap=True, overflow="ellipsis", min_width=len(col), ratio=1)
    return table


def _status(status: str) -> str:
    color = {"succeeded": "green", "failed": "red", "crashed": "red", "interrupted": "yellow",
             "running": "cyan"}.get(status, "white")
    return f"[{color}]{status}[/{color}]"


def resolve_run(pathspec: str) -> Any:
    from keel.client.core import parse_pathspec
    from keel.store import Store

    flow, run_id = parse_pathspec(pathspec, 2)
    md = Store.from_env().metadata
    record = md.runs.get_run(flow, int(run_id))
    if record is None:
        raise NotFoundError(f"no run {flow}/{run_id}; list the runs with: keel runs {flow}")
    return md, record


def cmd_show_run(pathspec: str) -> int:
    from rich.table import Table

    md, r = resolve_run(pathspec)
    out = _console()
    out.print(f"[bold]{_m(r.pathspec)}[/bold]  {_status(r.effective_status)}")
    out.print(f"  started {_when(r.created_at)}, finished {_when(r.finished_at)}, "
              f"took {_seconds(r.created_at, r.finished_at)}; by {_m(r.user)} on {_m(r.hostname)}")
    if r.origin_run_id:
        out.print(f"  resumed from {r.flow}/{r.origin_run_id}")
    if r.error:
        out.print(f"  [red]error:[/red] {_m(r.error, multiline=True)}")
    if r.params:
        out.print("  params: " + _m(", ".join(f"{k}={_short(v)}" for k, v in r.params.items())))
    if r.tags:
        out.print("  tags: " + _m(", ".join(r.tags)))
    for c in md.annotations.list_comments(r.flow, r.run_id):
        out.print(f"  comment ({_m(c['author'])}, {_when(c['created_at'])}): {_m(c['text'], multiline=True)}")
    env = r.environment
    if env:
        git = f", git {env['git_commit'][:10]}{' (dirty)' if env.get('git_dirty') else ''}" if env.get("git_commit") else ""
        snap = env.get("snapshot") or {}
        kept = f" ({snap.get('files')} files kept)" if snap.get("files") else ""
        out.print(_m(f"  python {env.get('python')}{git}, code {str(r.code_hash or '')[:12]}{kept}"))
    tasks = md.runs.list_tasks(r.flow, r.run_id)
    steps = table = Table(box=None, header_style="bold", title=None)
    for col in ("step", "tasks", "status", "started", "took", "cpu", "peak mem", "artifacts"):
        table.add_column(col)
    from keel.tracking.sysmetrics import task_resources

    resources = task_resources(md, r.flow, r.run_id)  # sys.* metrics of each task
    by_step: dict[str, list[Any]] = {}
    for t in tasks:
        by_step.setdefault(t.step, []).append(t)
    for row in md.runs.list_steps(r.flow, r.run_id):
        ts = by_step.get(row["step"], [])
        counts: dict[str, int] = {}
        for t in ts:
            counts[t.status] = counts.get(t.status, 0) + 1
        status = ", ".join(f"{n} {s}" for s, n in counts.items()) or "not run"
        origins = sorted({t.origin_run_id for t in ts if t.origin_run_id is not None})
        if origins:  # resume took these tasks from an earlier run
            status += " (from " + ", ".join(f"{r.flow}/{o}" for o in origins) + ")"
        started = min((t.started_at for t in ts if t.started_at), default=None)
        finished = max((t.finished_at for t in ts if t.finished_at), default=None)
        arts = ""
        if ts:
            own = {n: a for n, a in md.runs.task_artifacts(r.flow, r.run_id, ts[0].task_id).items() if a["own"]}
            arts = ", ".join(f"{n} ({size_text(a['size'])})" for n, a in own.items())
            if len(ts) > 1 and arts:
                arts += " per task"
        used = [resources[t.task_id] for t in ts if t.task_id in resources]
        cpu = sum(u.get("cpu_time_s", 0.0) for u in used)
        peak = max((u.get("peak_rss_mb", 0.0) for u in used), default=0.0)
        steps.add_row(_m(row["step"]), str(len(ts)), _m(status), _when(started)[11:], _seconds(started, finished),
                      (f"{cpu * 1000:.0f}ms" if cpu < 1 else f"{cpu:.2f}s") if used else "-",
                      f"{peak:.0f} MB" if used else "-", _m(arts))
    out.print(table)
    step_of = {t.task_id: t.step for t in tasks}
    for link in md.links.list(r.flow, r.run_id):   # addresses tasks published: their Spark UI, ...
        label = {"spark_ui": "Spark UI", "spark_app_ui": "Spark application UI"}.get(link.name, link.name)
        out.print(f"  {label} of {link.flow}/{link.run_id}/{step_of.get(link.task_id, '?')}/"
                  f"{link.task_id}: {link.url}", soft_wrap=True)
    from keel.store.records import TASK_LOG_LOST

    lost = md.events.read(0, flow=r.flow, run_id=r.run_id, limit=None, kinds=(TASK_LOG_LOST,))
    for event in lost[:3]:  # the run kept its results, but not all of these tasks' output
        error = (event.detail or {}).get("error", "?")
        out.print(f"  [yellow]task {event.task_id} ({_m(event.step or '?')})[/yellow]: its log misses output "
                  f"that could not be written: {_m(str(error))}", soft_wrap=True)
    if len(lost) > 3:
        out.print(f"  [yellow]... and {len(lost) - 3} more tasks whose logs miss output[/yellow]")
    failed = [a for a in md.runs.list_attempts(r.flow, r.run_id) if a["status"] == "failed"]
    for a in failed[-3:]:
        out.print(f"  [red]task {a['task_id']} attempt {a['attempt']}[/red]: {_m(a['error_type'])}: {_m(a['error_message'], multiline=True)}")
    metrics = md.metrics.run_metrics(r.flow, r.run_id)
    if metrics:
        shown = {k: v for k, v in metrics.items() if not k.startswith("sys.")}  # system metrics: columns above
        if shown:
            out.print("  metrics (last): " + _m(", ".join(f"{k}={v[-1][1]:g}" for k, v in shown.items())))
    return 0


def cmd_compare(pathspecs: list[str], as_json: bool, as_csv: bool) -> int:
    if len(pathspecs) < 2:
        raise UsageError("compare needs at least two runs, e.g. keel compare BigSum/3 BigSum/4")
    rows: list[dict[str, Any]] = []
    for p in pathspecs:
        md, r = resolve_run(p)
        from keel.tracking.search import run_last_values
        from keel.tracking.sysmetrics import task_resources

        metrics = run_last_values(md, r.flow, r.run_id)
        used = task_resources(md, r.flow, r.run_id).values()
        rows.append({"run": r.pathspec, "status": r.effective_status,
                     "duration": (r.finished_at - r.created_at) if r.finished_at else None,
                     "cpu_time_s": round(sum(u.get("cpu_time_s", 0.0) for u in used), 3) if used else None,
                     "peak_rss_mb": round(max(u.get("peak_rss_mb", 0.0) for u in used), 1) if used else None,
                     "tags": ",".join(r.tags),
                     **{f"params.{k}": v for k, v in r.params.items()},
                     **{f"metrics.{k}": v for k, v in metrics.items() if not k.startswith("sys.")}})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if as_json:
        print(json_dumps(rows, indent=2))
        return 0
    if as_csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return 0
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    table.add_column("")
    for row in rows:
        table.add_column(_m(row["run"]))
    for col in columns[1:]:
        values = [row.get(col) for row in rows]
        differs = len({json.dumps(v, default=repr) for v in values}) > 1
        shown = [_seconds(0, v) if col == "duration" and v is not None else _short(v, 30) if v is not None else "-"
                 for v in values]
        name = f"[yellow]{_m(col)} *[/yellow]" if differs else _m(col)
        table.add_row(name, *(_m(s) for s in shown))
    _console().print(table)
    print("(* differs between runs)")
    return 0


def show_logs(flow: str, target: str, stream: str = "stdout", follow: bool = False, raw: bool = False) -> int:
    """``logs [FLOW/]RUN/STEP[/TASK]`` for a flow already known by name."""
    parts = target.strip("/").split("/")
    if parts and parts[0] == flow:
        parts = parts[1:]
    from keel.ids import parse_id

    def digits(text: str) -> bool:
        return text.isascii() and text.isdigit()

    if len(parts) not in (2, 3) or not digits(parts[0]) or (len(parts) == 3 and not digits(parts[2])):
        raise UsageError(f"malformed log target {clip(target)}: expected RUN/STEP[/TASK], e.g. 3/start or 3/part/7")
    run_id = parse_id(parts[0], "run id", target)
    task_id = parse_id(parts[2], "task id", target) if len(parts) == 3 else None
    return print_logs(flow, run_id, parts[1], task_id, stream, follow, raw)


def print_logs(flow: str, run_id: int, step: str, task_id: int | None, stream: str, follow: bool,
               raw: bool = False) -> int:
    from keel.store import Store
    from keel.store.records import TASK_END_EVENTS

    store = Store.from_env()
    md = store.metadata
    record = md.runs.get_run(flow, run_id)
    if record is None:
        raise NotFoundError(f"no run {flow}/{run_id}; list the runs with: keel runs {flow}")
    # --follow reads the run's tasks once, then follows the event log from a cursor taken first
    # (a task that starts in between is in both): task.* events name the tasks to tail, run.*
    # events (or the followed task's end) end it. No table is polled.
    cursor = md.events.last_id() if follow else 0
    task_ids = {t.task_id for t in md.runs.list_tasks(flow, run_id, step) if task_id is None or t.task_id == task_id}
    if not task_ids and not follow:
        raise NotFoundError(f"run {flow}/{run_id} has no task" + (f" {task_id}" if task_id else "")
                            + f" in step {step!r}")
    offsets: dict[int, int] = {}
    ended, checked = record.effective_status != "running", time.monotonic()
    while True:
        tasks = sorted(task_ids)
        for tid in tasks:
            path = store.logs.path(flow, run_id, step, tid, stream)
            try:
                with open(path, "rb") as fh:
                    fh.seek(offsets.get(tid, 0))
                    data = fh.read()
            except FileNotFoundError:
                data = b""
            if data:
                prefix = f"[{flow}/{run_id}/{step}/{tid}] " if len(tasks) > 1 else ""
                text = data.decode("utf-8", "replace")
                if prefix:
                    text = "".join(prefix + line for line in text.splitlines(keepends=True))
                if not raw:  # a task's output is shown, not obeyed: escape sequences become visible
                    text = _plain(text, multiline=True)
                sys.stdout.write(text)
                sys.stdout.flush()
                offsets[tid] = offsets.get(tid, 0) + len(data)
        if not follow:
            return 0
        while True:  # every new event of the run, a page at a time
            batch = md.events.read(cursor, flow=flow, run_id=run_id, limit=_EVENT_PAGE)
            for event in batch:
                cursor = event.id
                if event.step == step and event.task_id is not None and task_id in (None, event.task_id):
                    task_ids.add(event.task_id)
                ended = ended or event.ends_run or (task_id is not None and event.task_id == task_id
                                                    and event.kind in TASK_END_EVENTS)
            if len(batch) < _EVENT_PAGE:
                break
        # A run whose scheduler died writes no event: the one check that is not the event log,
        # its liveness (one row by key, through the store's run API), every few seconds.
        if not ended and time.monotonic() - checked > _LIVENESS_EVERY:
            checked = time.monotonic()
            record = md.runs.get_run(flow, run_id)
            ended = record is None or record.effective_status != "running"
        if ended and all(offsets.get(tid, 0) >= _size(store, flow, run_id, step, tid, stream) for tid in task_ids):
            return 0
        time.sleep(0.2)


_EVENT_PAGE = 1000
_LIVENESS_EVERY = 5.0  # seconds between liveness checks of a followed run that has not ended


def _size(store: Any, flow: str, run_id: int, step: str, task_id: int, stream: str) -> int:
    try:
        return store.logs.path(flow, run_id, step, task_id, stream).stat().st_size
    except FileNotFoundError:
        return 0
