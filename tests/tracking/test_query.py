"""The search language: parsing, errors with columns, SQL results, the CLI and the client."""

from __future__ import annotations

import json
import random
import time

import pytest

from keel_testing import run_cli
from keel import Flow
from keel.errors import QueryError
from keel.store import Store
from keel.tracking.query import Compare, In, Query, parse, parse_sort


def seed(md, flow: str, n: int, *, now: float | None = None) -> None:
    """n finished runs with params alpha/depth/opt, metrics acc (3 points) and loss, some tags,
    written in bulk (the listing is what is measured, not the writing)."""
    from keel.store.metadata import params, runs, tags
    from keel.store.runs import insert_metrics

    now = now or time.time()
    rng = random.Random(7)
    run_rows, param_rows, metric_rows, tag_rows = [], [], [], []
    for i in range(1, n + 1):
        created = now - (n - i) * 10
        status = "failed" if i % 10 == 0 else "succeeded"
        run_rows.append({"flow": flow, "run_id": i, "kind": "flow", "status": status, "created_at": created,
                         "finished_at": created + (i % 7) + 1, "heartbeat_at": created, "user": "ana" if i % 2 else "bo",
                         "environment": "{}"})
        alpha, depth, opt = round(i / n, 4), 2 + i % 7, ["adam", "sgd"][i % 2]
        for name, value in (("alpha", alpha), ("depth", depth), ("opt", opt)):
            param_rows.append({"flow": flow, "run_id": i, "name": name, "value": json.dumps(value),
                               "num": float(value) if not isinstance(value, str) else None})
        if status == "succeeded":
            for step, acc in enumerate((0.5, 0.7, round(0.5 + 0.5 * alpha, 4))):
                metric_rows.append({"flow": flow, "run_id": i, "task_id": 1, "name": "acc", "step": step,
                                    "value": acc, "ts": created + step})
            metric_rows.append({"flow": flow, "run_id": i, "task_id": 1, "name": "loss", "step": None,
                                "value": rng.random(), "ts": created})
        if i % 3 == 0:
            tag_rows.append({"flow": flow, "run_id": i, "tag": "baseline", "system": False})
    with md.db.write() as conn:
        conn.execute(runs.insert(), run_rows)
        conn.execute(params.insert(), param_rows)
        insert_metrics(conn, metric_rows)   # the store's writer: the points and each metric's last value
        if tag_rows:
            conn.execute(tags.insert(), tag_rows)


def ids(records) -> list[int]:
    return [r.id for r in records]


def test_parse_tree_and_precedence():
    tree = parse('params.alpha > 0.3 or not status = "failed" and "x" in tags')
    assert tree.op == "or"
    left, right = tree.items
    assert left == Compare(left.field, ">", 0.3, 1) and str(left.field) == "params.alpha"
    assert right.op == "and" and isinstance(right.items[1], In)
    assert parse("duration < 2m").value == 120.0
    assert str(parse("metrics.sys.rss_mb < 5").field) == "metrics.sys.rss_mb"
    assert parse("metrics.`val loss` >= 1").field.name == "val loss"
    assert [(k.field.kind, k.field.name, k.descending) for k in parse_sort("-metrics.acc, created")] == [
        ("metrics", "acc", True), ("created", "", False)]


@pytest.mark.parametrize("query, column, message", [
    ("params.alpha >", 15, "expected a value (a number or a quoted string), found the end of the query"),
    ("params.alpha > 0.3 and", 23, "the query ends too early: expected a comparison such as params.alpha > 0.3"),
    ("parms.alpha > 1", 1, "unknown field 'parms.alpha'. Did you mean params.alpha?"),
    ("(params.a > 1", 14, "expected ')' to close the '(' at column 1, found the end of the query"),
    ("params.a > 1)", 13, "this ')' closes nothing"),
    ("params.a = 'x", 12, "the string that starts here is never closed; end it with '"),
    ("metrics.acc = \"x\"", 1, "metrics.acc is a number; compare it with a number, not \"x\""),
    ("params.a ; 1", 10, "unexpected character ';'"),
    ("alpha > 1", 1, "unknown field 'alpha'. Did you mean params.alpha or metrics.alpha?"),
    ('status = "done"', 1, "unknown status 'done'; statuses are: running, succeeded, failed, interrupted, crashed"),
])
def test_bad_queries_point_at_the_column(query, column, message):
    with pytest.raises(QueryError) as info:
        Query(query)
    assert info.value.column == column
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"bad query at column {column}: {message}")
    assert str(info.value).splitlines()[2] == "  " + " " * (column - 1) + "^"


def test_search_filters_sorts_and_limits(keel_home):
    md = Store.from_env().metadata
    seed(md, "Train", 100)
    q = lambda where=None, sort=None, limit=None: ids(Flow("Train").runs(where=where, sort=sort, limit=limit))  # noqa: E731
    # acc's last value is 0.5 + alpha/2: >= 0.9 means alpha >= 0.8, i.e. runs 80..100 without the failed ones
    assert q("params.alpha > 0.3 and metrics.acc >= 0.9", "-metrics.acc") == [99, 98, 97, 96, 95, 94, 93, 92, 91,
                                                                            89, 88, 87, 86, 85, 84, 83, 82, 81]
    assert q("params.alpha > 0.3 and metrics.acc >= 0.9", "-metrics.acc", limit=3) == [99, 98, 97]
    assert q('status = "failed"', "id") == list(range(10, 101, 10))
    assert q('params.opt = "adam" and params.depth in (2, 3) and id <= 20', "id") == [8, 14]
    assert q('"baseline" in tags and id < 10', "id") == [3, 6, 9]
    assert q('"baseline" not in tags and id < 6', "id") == [1, 2, 4, 5]
    assert q("not (id > 3)", "-id") == [3, 2, 1]
    assert q('user = "bo" and duration >= 7 and id < 30', "id") == [6, 20]
    assert q("metrics.missing > 0") == []
    assert ids(Flow("Train").runs("baseline", where="id < 7", sort="id")) == [3, 6]
    assert len(Flow("Train").runs("baseline")) == 33  # the old form still works
    newest = q(limit=2)
    assert newest == [100, 99]
    # runs without the sort value come last, whatever the direction
    assert q("id >= 88", "metrics.acc")[-2:] == [100, 90]  # ties: newest first
    assert q("id >= 88", "-metrics.acc")[-2:] == [100, 90]
    assert q("id >= 88", "metrics.acc")[0] == 88


def test_created_status_crashed(keel_home):
    md = Store.from_env().metadata
    seed(md, "Train", 5, now=1_700_000_000.0)  # 2023-11-14
    assert ids(Flow("Train").runs(where='created >= "2023-11-14" and created < "2030-01-01"')) != []
    assert ids(Flow("Train").runs(where='created < "2020-01-01"')) == []
    rid = md.runs.new_run("Train", params={})  # running, with a fresh heartbeat
    assert ids(Flow("Train").runs(where='status = "running"')) == [rid]
    assert ids(Flow("Train").runs(where='status = "crashed"')) == []
    from keel.store.metadata import runs

    with md.db.write() as conn:
        # a scheduler on another machine (no identity this one can check) whose heartbeat stopped
        conn.execute(runs.update().where(runs.c.run_id == rid).values(heartbeat_at=time.time() - 600,
                                                                       environment="{}"))
    assert ids(Flow("Train").runs(where='status = "crashed"')) == [rid]
    assert Flow("Train").runs(where='status = "crashed"')[0].status == "crashed"
    assert ids(Flow("Train").runs(where='status = "running"')) == []


def test_a_running_run_whose_scheduler_lives_is_not_crashed_even_with_an_old_heartbeat(keel_home):
    """One answer to "is it crashed?": the query filter and the listed status agree."""
    md = Store.from_env().metadata
    rid = md.runs.new_run("Train", params={})   # this process is its scheduler, and it is alive
    from keel.store.metadata import runs

    with md.db.write() as conn:
        conn.execute(runs.update().where(runs.c.run_id == rid).values(heartbeat_at=time.time() - 600))
    assert md.runs.get_run("Train", rid).effective_status == "running"
    assert ids(Flow("Train").runs(where='status = "running"')) == [rid]
    assert ids(Flow("Train").runs(where='status = "crashed"')) == []


def test_cli_where_sort_json_and_errors(keel_home):
    seed(Store.from_env().metadata, "Train", 30)
    proc = run_cli("runs", "Train", "--where", "params.alpha > 0.5 and metrics.acc >= 0.8", "--sort", "-metrics.acc",
                   "--limit", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["pathspec"] for r in rows] == ["Train/29", "Train/28"]
    assert rows[0]["metrics"] == {"acc": round(0.5 + 0.5 * round(29 / 30, 4), 4)}
    proc = run_cli("runs", "Train", "--where", "params.alpha > 0.9", "--sort", "-params.alpha")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert "params.alpha" in lines[0] and [line.split()[0] for line in lines[1:]] == ["Train/30", "Train/29", "Train/28"]
    proc = run_cli("runs", "Train", "--where", "params.alpha >> 1")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "keel: bad query at column 15: expected a value (a number or a quoted string), found '>'",
        "  params.alpha >> 1", "                ^"]
    proc = run_cli("runs", "Train", "--sort", "-metrics.acc,")
    assert proc.returncode == 2 and "bad query at column 14: empty sort key" in proc.stderr
    proc = run_cli("runs", "Train", "--where", "id > 1000")
    assert proc.returncode == 0 and proc.stdout.strip() == "No runs match."


def test_thousands_of_runs_filtered_and_listed(keel_home):
    """Correct at scale; how fast is `make bench` (benchmarks/tracking_bench.py, 10,000 runs)."""
    n = 3_000
    md = Store.from_env().metadata
    seed(md, "Big", n)
    found = Flow("Big").runs(where="params.alpha > 0.3 and metrics.acc >= 0.9", sort="-metrics.acc")
    expected = [i for i in range(1, n + 1) if i % 10 and i / n > 0.3
                and round(0.5 + 0.5 * round(i / n, 4), 4) >= 0.9]
    assert sorted(r.id for r in found) == expected and found[0].id == n - 1
    assert len(Flow("Big").runs(limit=n)) == n
