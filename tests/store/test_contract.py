"""One suite for every backend of the store's interfaces: the in-memory fake, SQLite and a
real PostgreSQL server. What one answers, the others answer."""

from __future__ import annotations

import math
import time
from itertools import groupby

import pytest

from keel.store.records import (
    ArtifactsWrite, AttemptWrite, EventWrite, MetricsWrite, StepWrite, TagsWrite, TaskWrite,
)


def _task(flow: str, run_id: int, task_id: int, step: str, status: str, attempts: int = 1) -> TaskWrite:
    return TaskWrite(flow, run_id, task_id, step, status, attempts, time.time())


def _metrics(rows: list[dict]) -> list[MetricsWrite]:
    """Metric point rows ({flow, run_id, task_id, name, step, value, ts}) as write records, one per
    stretch of consecutive rows of one task, so the points keep their order."""
    return [MetricsWrite(*key, tuple((r["name"], r["step"], r["value"], r["ts"]) for r in group))
            for key, group in groupby(rows, lambda r: (r["flow"], r["run_id"], r["task_id"]))]


def test_run_ids_increase_per_flow(md):
    assert [md.runs.new_run("A", params={}) for _ in range(3)] == [1, 2, 3]
    assert md.runs.new_run("B", params={}) == 1
    assert md.runs.latest_run_id("A") == 3
    assert md.runs.list_flows() == ["A", "B"]
    assert [r.run_id for r in md.runs.list_runs("A")] == [3, 2, 1]


def test_a_run_keeps_its_params_tags_and_status(md):
    run_id = md.runs.new_run("A", params={"alpha": 0.5, "name": "x"}, tags=["t1", "t1", "t2"])
    md.runs.set_run_status("A", run_id, "failed", error="ValueError: no")
    r = md.runs.get_run("A", run_id)
    assert (r.params, r.tags, r.status, r.error) == ({"alpha": 0.5, "name": "x"}, ["t1", "t2"], "failed",
                                                     "ValueError: no")
    assert r.finished_at is not None and r.effective_status == "failed"
    assert md.runs.get_run("A", 99) is None


def test_write_batch_records_tasks_attempts_artifacts_metrics_and_tags(md):
    run_id = md.runs.new_run("A", params={})
    md.runs.register_steps("A", run_id, ["start", "end"])
    md.runs.write_batch([
        _task("A", run_id, 1, "start", "running"),
        AttemptWrite("A", run_id, 1, 0, "succeeded", started_at=1.0, finished_at=2.0, exit_code=0),
        _task("A", run_id, 1, "start", "succeeded"),
        ArtifactsWrite("A", run_id, 1, {"x": {"key": "k1", "serializer": "pickle", "size": 3}}, frozenset({"x"})),
        MetricsWrite("A", run_id, 1, tuple(("loss", i, 1.0 / (i + 1), float(i)) for i in range(3))),
        TagsWrite("A", run_id, ("auto",)),
        StepWrite("A", run_id, "start", "done", None, None),
    ])
    (task,) = md.runs.list_tasks("A", run_id)
    assert (task.step, task.status, task.parents) == ("start", "succeeded", [])
    assert md.runs.get_task("A", run_id, 1) == task
    (attempt,) = md.runs.list_attempts("A", run_id, 1)
    assert (attempt.status, attempt.exit_code, attempt["status"]) == ("succeeded", 0, "succeeded")
    assert md.runs.task_artifacts("A", run_id, 1) == {"x": {"key": "k1", "serializer": "pickle", "size": 3,
                                                            "own": True}}
    assert md.metrics.run_metrics("A", run_id)["loss"] == [(0, 1.0, 0.0), (1, 0.5, 1.0), (2, 1 / 3, 2.0)]
    assert md.metrics.last_values("A", run_id) == {"loss": 1 / 3}
    assert md.metrics.last_of_runs([("A", run_id)], ["loss"]) == {("A", run_id): {"loss": 1 / 3}}
    assert md.runs.get_run("A", run_id).tags == ["auto"]
    assert [(s.step, s.status) for s in md.runs.list_steps("A", run_id)] == [("start", "done"), ("end", "pending")]


def test_tags_and_comments(md):
    run_id = md.runs.new_run("A", params={})
    md.annotations.add_tags("A", run_id, ["a", "b"])
    md.annotations.remove_tags("A", run_id, ["a"])
    c = md.annotations.add_comment("A", run_id, "looks good", author="ana")
    assert md.runs.get_run("A", run_id).tags == ["b"]
    assert [(x.id, x.author, x.text) for x in md.annotations.list_comments("A", run_id)] == [(c.id, "ana",
                                                                                             "looks good")]


def test_system_tags_are_kept_apart_from_user_tags_and_never_removed(md):
    run_id = md.runs.new_run("A", params={}, tags=["mine"], system_tags=["user:alice", "runtime:dev"])
    md.annotations.add_tags("A", run_id, ["later"])
    assert md.runs.get_run("A", run_id).tags == ["later", "mine"]          # the contract's tags: user tags
    assert md.annotations.tag_kinds("A", run_id) == {"user:alice": True, "runtime:dev": True,
                                                     "mine": False, "later": False}
    md.annotations.remove_tags("A", run_id, ["user:alice", "mine"])
    assert md.annotations.tag_kinds("A", run_id) == {"user:alice": True, "runtime:dev": True, "later": False}
    found = md.query.search_runs(flow="A", where='"user:alice" in tags')   # a namespace is a system tag
    assert [(r.run_id, r.tags) for r in found] == [(run_id, ["later"])]


def test_a_cron_time_is_claimed_once(md):
    assert md.schedules.claim_fire("p", "job", 60.0)
    assert not md.schedules.claim_fire("p", "job", 60.0)
    md.schedules.update_fire("p", "job", 60.0, run_id=4)
    (fire,) = md.schedules.list_fires("p", "job")
    assert (fire.fire_time, fire.status, fire.run_id) == (60.0, "started", 4)


def test_events_record_each_state_change_in_order(md):
    run_id = md.runs.new_run("A", params={})
    md.runs.write_batch([_task("A", run_id, 1, "start", "running")])
    md.runs.write_batch([_task("A", run_id, 1, "start", "failed"),
                         EventWrite("A", run_id, "task.retried", step="start", task_id=1, attempt=0)])
    md.runs.set_run_status("A", run_id, "failed")
    events = md.events.read(0, flow="A", run_id=run_id)
    assert [e.kind for e in events] == ["run.started", "task.started", "task.failed", "task.retried", "run.failed"]
    assert [e.id for e in events] == sorted(e.id for e in events) and len({e.id for e in events}) == 5
    assert md.events.read(events[2].id, run_id=run_id) == events[3:]
    assert md.events.last_id() == events[-1].id
    assert [e.kind for e in md.events.follow(0, flow="A", run_id=run_id, timeout=5)] == [e.kind for e in events]


def test_events_are_filtered_by_run(md):
    a = md.runs.new_run("A", params={})
    b = md.runs.new_run("B", params={})
    md.runs.set_run_status("B", b, "succeeded")
    assert [(e.flow, e.kind) for e in md.events.read(0, flow="B")] == [("B", "run.started"), ("B", "run.succeeded")]
    assert [e.run_id for e in md.events.read(0, flow="A", run_id=a)] == [a]


def test_events_are_filtered_by_kind(md):
    run_id = md.runs.new_run("K", params={})
    md.runs.write_batch([EventWrite("K", run_id, "task.log_lost", step="start", task_id=1, detail={"error": "EIO"})])
    md.runs.set_run_status("K", run_id, "succeeded")
    (event,) = md.events.read(0, flow="K", run_id=run_id, kinds=("task.log_lost",))
    assert (event.step, event.task_id, event.detail) == ("start", 1, {"error": "EIO"})
    assert len(md.events.read(0, flow="K", run_id=run_id, kinds=("task.log_lost", "run.succeeded"))) == 2


def _seed_runs(md) -> None:
    for alpha, acc, tag in ((0.1, 0.5, "base"), (0.5, 0.9, None), (0.9, None, "base"), (0.7, 0.8, None)):
        run_id = md.runs.new_run("Q", params={"alpha": alpha, "opt": "adam" if alpha < 0.6 else "sgd"},
                                 tags=[tag] if tag else [])
        if acc is not None:
            md.runs.write_batch(_metrics([{"flow": "Q", "run_id": run_id, "task_id": 1, "name": "acc",
                                               "step": 0, "value": acc, "ts": 1.0}]))
        md.runs.set_run_status("Q", run_id, "failed" if acc is None else "succeeded")


@pytest.mark.parametrize("where, sort, expected", [
    (None, None, [4, 3, 2, 1]),
    ("params.alpha > 0.3", "-params.alpha", [3, 4, 2]),
    ('params.opt = "adam" and metrics.acc >= 0.6', None, [2]),
    ('"base" in tags', "id", [1, 3]),
    ("not metrics.acc > 0.6", None, [1]),            # a run without acc is neither > nor not >
    ('status = "failed" or params.alpha in (0.1, 0.7)', "-id", [4, 3, 1]),
    (None, "-metrics.acc", [2, 4, 1, 3]),           # runs without the value come last
])
def test_search_runs_filters_and_sorts_alike(md, where, sort, expected):
    _seed_runs(md)
    assert [r.run_id for r in md.query.search_runs(flow="Q", where=where, sort=sort)] == expected


@pytest.mark.parametrize(("where", "expected"), [
    ("params.n = 100000000000000000000000", [1]), ("params.n > 90000000000000000000000", [1]),
    ("params.n < -99999999999999999999999", []), ("metrics.acc > 99999999999999999999", [])])
def test_a_number_beyond_64_bits_in_where_is_compared_not_an_overflow(md, where, expected):
    md.runs.new_run("Big", params={"n": 10**23})
    md.runs.new_run("Big", params={"n": 3})
    assert [r.run_id for r in md.query.search_runs(flow="Big", where=where)] == expected


def test_search_runs_pages_with_limit_and_offset(md):
    _seed_runs(md)
    assert [r.run_id for r in md.query.search_runs(flow="Q", sort="id", limit=2, offset=1)] == [2, 3]


def test_a_running_run_of_a_live_scheduler_is_running_in_the_list_and_the_filter(md):
    run_id = md.runs.new_run("Q", params={})   # this process is its scheduler
    (r,) = md.query.search_runs(flow="Q", where='status = "running"')
    assert (r.run_id, r.effective_status) == (run_id, "running")
    assert md.query.search_runs(flow="Q", where='status = "crashed"') == []


def test_an_alert_fires_once_per_rule_run_and_key_with_its_outbox(md):
    first = md.alerts.fire("r", "F", 1, "run", summary="F/1 failed", fields={"a": 1},
                           targets=[{"webhook": "http://h/x"}, {"email": "a@b.c"}], now=100.0)
    assert first is not None and first.fields == {"a": 1}
    assert md.alerts.fire("r", "F", 1, "run", summary="again", fields={}, targets=[{"command": "true"}]) is None
    assert [(d.action, d.status, d.attempts) for d in md.alerts.deliveries(first.id)] == [
        (0, "pending", 0), (1, "pending", 0)]
    assert md.alerts.get_firing(first.id).summary == "F/1 failed"


def test_the_cooldown_holds_back_a_rule_that_just_fired(md):
    assert md.alerts.fire("r", "F", 1, "run", summary="", fields={}, targets=[], cooldown=60, now=100.0)
    assert md.alerts.fire("r", "F", 2, "run", summary="", fields={}, targets=[], cooldown=60, now=150.0) is None
    assert md.alerts.fire("r", "F", 3, "run", summary="", fields={}, targets=[], cooldown=60, now=161.0)
    assert [f.run_id for f in md.alerts.firings("r")] == [3, 1]


def test_a_claimed_delivery_is_leased_and_claimed_again_when_the_lease_ends(md):
    firing = md.alerts.fire("r", "F", 1, "run", summary="", fields={}, targets=[{"command": "true"}], now=100.0)
    [d] = md.alerts.claim(now=100.0, lease=30)
    assert (d.status, d.attempts, d.target) == ("sending", 1, {"command": "true"})
    assert md.alerts.claim(now=120.0) == []           # another deliverer waits for the lease
    [again] = md.alerts.claim(now=131.0, lease=30)     # the first one died: claimed again
    assert again.attempts == 2
    md.alerts.retry_later(again.id, "boom", 200.0)
    assert md.alerts.claim(now=199.0) == []
    [third] = md.alerts.claim(now=200.0)
    md.alerts.delivered(third.id, now=201.0)
    [done] = md.alerts.deliveries(firing.id)
    assert (done.status, done.delivered_at, done.last_error) == ("delivered", 201.0, None)
    assert md.alerts.claim(now=1e12) == []


@pytest.mark.parametrize("where, expected", [(None, 4), ("params.alpha > 0.3", 3), ('"base" in tags', 2),
                                             ('status = "crashed"', 0)])
def test_count_runs_counts_what_search_runs_finds(md, where, expected):
    _seed_runs(md)
    assert md.query.count_runs("Q", where) == expected == len(md.query.search_runs(flow="Q", where=where))
    assert md.query.count_runs("nope") == 0


def test_tags_and_comments_are_events(md):
    run_id = md.runs.new_run("A", params={})
    md.annotations.add_tags("A", run_id, ["a"])
    md.annotations.remove_tags("A", run_id, ["a"])
    md.annotations.add_comment("A", run_id, "hi")
    kinds = [e.kind for e in md.events.read(0, flow="A", run_id=run_id)]
    assert kinds == ["run.started", "run.tagged", "run.untagged", "run.commented"]


def _series(md, n: int, steps: bool = True) -> None:
    import math

    run_id = md.runs.new_run("M", params={})
    md.runs.write_batch(_metrics([{"flow": "M", "run_id": run_id, "task_id": 1 + i % 2, "name": "loss",
                                       "step": i * 3 if steps else None, "value": math.sin(i / 7.0) + i / n,
                                       "ts": float(i)} for i in range(n)]))


@pytest.mark.parametrize("n, buckets, lo, hi, steps", [
    (1000, 37, None, None, True), (1000, 50, 300.0, 1200.5, True), (20, 50, None, None, True),
    (500, 10, None, None, False), (500, 10, 100.0, 100.0, False), (10, 5, 5000.0, None, True)])
def test_bucketed_metrics_agree_with_the_python_reduction(md, n, buckets, lo, hi, steps):
    from keel.store.records import bucket_points

    _series(md, n, steps)
    points = md.metrics.run_metrics("M", 1, "loss")["loss"]
    got, want = md.metrics.bucketed("M", 1, "loss", buckets, lo, hi), bucket_points(points, buckets, lo, hi)
    assert (got.count, got.lo, got.hi, got.x) == (want.count, want.lo, want.hi, want.x)
    for a, b in ((got.min, want.min), (got.max, want.max), (got.last, want.last)):
        assert a == pytest.approx(b)
    assert len(got.x) <= buckets


def test_bucketed_metrics_of_one_task(md):
    _series(md, 100)
    got = md.metrics.bucketed("M", 1, "loss", 1000, task_id=2)
    assert got.count == 50 and got.x[:2] == (3.0, 9.0)


def test_task_links_are_kept_per_task_and_replaced_by_name(md):
    run_id = md.runs.new_run("S", params={})
    md.links.add("S", run_id, 2, "spark_ui", "http://127.0.0.1:1")
    md.links.add("S", run_id, 1, "spark_ui", "http://127.0.0.1:2")
    md.links.add("S", run_id, 2, "spark_ui", "http://127.0.0.1:3")      # a retry's cluster
    assert [(l.task_id, l.url) for l in md.links.list("S", run_id)] == [(1, "http://127.0.0.1:2"),
                                                                       (2, "http://127.0.0.1:3")]
    assert [l.task_id for l in md.links.list("S", run_id, task_id=2)] == [2]
    assert md.links.list("S", 99) == []


def test_the_last_value_of_a_metric_follows_every_batch_and_keeps_nan(md):
    run_id = md.runs.new_run("L", params={})
    point = {"flow": "L", "run_id": run_id, "task_id": 1, "ts": 1.0, "step": None}
    md.runs.write_batch(_metrics([{**point, "name": "loss", "value": 3.0}, {**point, "name": "loss", "value": 2.0},
                                      {**point, "name": "acc", "value": 0.5}]))
    assert md.metrics.last_of_runs([("L", run_id)], ["loss", "acc"]) == {("L", run_id): {"loss": 2.0, "acc": 0.5}}
    md.runs.write_batch(_metrics([{**point, "name": "loss", "value": 1.0}]))
    md.runs.write_batch(_metrics([{**point, "task_id": 2, "name": "acc", "value": float("nan")}]))
    last = md.metrics.last_of_runs([("L", run_id)], ["loss", "acc"])[("L", run_id)]
    assert last["loss"] == 1.0 and math.isnan(last["acc"])
    assert [r.run_id for r in md.query.search_runs(flow="L", where="metrics.loss < 1.5")] == [run_id]
    assert md.metrics.names_of_runs([("L", run_id), ("L", run_id + 1)]) == ["acc", "loss"]


@pytest.mark.parametrize("where, sort, offset, ids, total", [
    (None, None, 0, [4, 3], 4), (None, "id", 2, [3, 4], 4), ("params.alpha > 0.3", "-params.alpha", 0, [3, 4], 3),
    ("params.alpha > 0.3", "-params.alpha", 2, [2], 3), ("params.alpha > 0.3", None, 10, [], 3),
    ('status = "crashed"', None, 0, [], 0),
])
def test_a_search_page_carries_the_total_that_match(md, where, sort, offset, ids, total):
    from keel.store.querylang import Query

    _seed_runs(md)
    page = md.query.search_page(flow="Q", limit=2, offset=offset, query=Query(where, sort))
    assert ([r.run_id for r in page.runs], page.total) == (ids, total)
    assert md.query.search_page(flow="nope", query=Query(where, sort)).total == 0


def test_an_alert_cursor_is_saved_alone_or_with_a_firing_and_not_by_a_repeated_one(md):
    assert md.alerts.cursor("watch") is None
    md.alerts.save_cursor("watch", 5)
    md.alerts.fire("r", "F", 1, "run", summary="", fields={}, targets=[], cursor=("watch", 9))
    assert md.alerts.cursor("watch") == 9
    assert md.alerts.fire("r", "F", 1, "run", summary="", fields={}, targets=[], cursor=("watch", 12)) is None
    assert md.alerts.cursor("watch") == 9 and md.alerts.cursor("other") is None


def test_a_status_set_only_if_still_expected_writes_its_event_once(md):
    run_id = md.runs.new_run("A", params={})
    assert md.runs.set_run_status("A", run_id, "crashed", error="SchedulerCrashed: gone", expect="running")
    assert not md.runs.set_run_status("A", run_id, "crashed", error="SchedulerCrashed: gone", expect="running")
    assert [e.kind for e in md.events.read(0)] == ["run.started", "run.crashed"]
    assert [r.run_id for r in md.runs.list_runs("A", status="crashed")] == [run_id]
    assert md.runs.list_runs("A", status="running") == []


def _runs_series(md) -> list[tuple[str, int]]:
    """Four runs of "loss": long and stepped, shifted and stepped, short, logged without steps;
    and a run with none."""
    import math

    shapes = [(900, lambda i: i * 2), (700, lambda i: 150 + i * 3), (12, lambda i: i * 50), (400, lambda i: None)]
    keys = []
    for n, step in shapes:
        run_id = md.runs.new_run("M", params={})
        md.runs.write_batch(_metrics([{"flow": "M", "run_id": run_id, "task_id": 1, "name": "loss",
                                           "step": step(i), "value": math.cos(i / 5.0) * (1 + run_id) + i / n,
                                           "ts": float(i)} for i in range(n)]))
        keys.append(("M", run_id))
    keys.append(("M", md.runs.new_run("M", params={})))
    return keys


@pytest.mark.parametrize("buckets, lo, hi", [(40, None, None), (300, None, None), (25, 333.0, 1500.5),
                                             (7, 5000.0, None), (50, 10.0, 10.0)])
def test_runs_are_bucketed_together_over_one_range(md, buckets, lo, hi):
    from keel.store.records import bucket_runs

    keys = _runs_series(md)
    got = md.metrics.bucketed_runs(keys + [keys[0]], "loss", buckets, lo, hi)
    want = bucket_runs({k: md.metrics.run_metrics(*k, "loss").get("loss", []) for k in keys}, buckets, lo, hi)
    assert list(got) == keys
    for key in keys:
        g, w = got[key], want[key]
        assert (g.count, g.lo, g.hi, g.x) == (w.count, w.lo, w.hi, w.x), key
        for a, b in ((g.min, w.min), (g.max, w.max), (g.last, w.last)):
            assert a == pytest.approx(b)
        assert g == md.metrics.bucketed(*key, "loss", buckets, g.lo, g.hi) or not g.count



def _awkward_series(md) -> list[tuple[str, int]]:
    """Runs of "loss" whose steps are out of order, repeat, leave gaps and go below zero, each
    written in several batches whose points share blocks (of ``records.METRIC_BLOCK`` steps)."""
    import math
    import random

    rng = random.Random(13)
    shuffled = list(range(3000))
    rng.shuffle(shuffled)
    shapes = [
        [shuffled[:1000], shuffled[1000:2000], shuffled[2000:], rng.sample(range(3000), 60)],   # out of order, repeats
        [list(range(s, min(s + 140, 2500), 7)) for s in range(-700, 2500, 140) if not 300 <= s < 900],  # gaps, < 0
        [[s for s in range(a, a + 100) for _ in range(3)] for a in range(0, 1500, 100)],        # each step 3 times
        [[10_000, 10_004, 10_001, 10_002, 10_003]],                                             # a few, far away
    ]
    keys = []
    for batches in shapes:
        run_id = md.runs.new_run("M", params={})
        i = 0
        for steps in batches:
            md.runs.write_batch(_metrics([{"flow": "M", "run_id": run_id, "task_id": 1 + j % 3, "name": "loss",
                                               "step": step, "value": math.sin((i + j) / 9.0) * (1 + run_id),
                                               "ts": float(i + j)} for j, step in enumerate(steps)]))
            i += len(steps)
        keys.append(("M", run_id))
    return keys


@pytest.mark.parametrize("buckets, lo, hi", [
    (10, None, None), (30, None, None), (20, -650.5, 2100.3), (40, 100.0, 900.0), (1, 130.0, 260.0),
    (2, -64.0, 64.0), (3, -200.0, 2999.0), (200, 0.0, 2999.0), (5, 10_000.0, 10_004.0)])
def test_awkward_series_are_bucketed_together_as_the_reference_does(md, buckets, lo, hi):
    from keel.store.records import bucket_runs

    keys = _awkward_series(md)
    got = md.metrics.bucketed_runs(keys, "loss", buckets, lo, hi)
    want = bucket_runs({k: md.metrics.run_metrics(*k, "loss").get("loss", []) for k in keys}, buckets, lo, hi)
    for key in keys:
        g, w = got[key], want[key]
        assert (g.count, g.lo, g.hi, g.x) == (w.count, w.lo, w.hi, w.x), key
        for a, b in ((g.min, w.min), (g.max, w.max), (g.last, w.last)):
            assert a == pytest.approx(b), key
        assert len(g.x) <= buckets


@pytest.mark.parametrize("buckets, lo, hi", [(10, None, None), (20, -650.5, 2100.3), (1, 130.0, 260.0)])
def test_one_awkward_series_is_bucketed_as_the_reference_does(md, buckets, lo, hi):
    from keel.store.records import bucket_points

    for key in _awkward_series(md):
        got = md.metrics.bucketed(*key, "loss", buckets, lo, hi)
        want = bucket_points(md.metrics.run_metrics(*key, "loss").get("loss", []), buckets, lo, hi)
        assert (got.count, got.x) == (want.count, want.x), key
        assert got.last == pytest.approx(want.last) and got.min == pytest.approx(want.min), key



@pytest.mark.parametrize("buckets", [1, 3, 50])
def test_a_series_spanning_a_billion_steps_is_bucketed_as_the_reference_does(md, buckets):
    from keel.store.records import bucket_runs

    run_id = md.runs.new_run("M", params={})
    steps = [*range(0, 300), *range(10**9, 10**9 + 300), *range(-(10**9), -(10**9) + 300)]
    md.runs.write_batch(_metrics([{"flow": "M", "run_id": run_id, "task_id": 1, "name": "loss", "step": s,
                                       "value": float((s * 7919) % 1000), "ts": 0.0} for s in steps]))
    got = md.metrics.bucketed_runs([("M", run_id)], "loss", buckets)[("M", run_id)]
    want = bucket_runs({("M", run_id): md.metrics.run_metrics("M", run_id, "loss")["loss"]}, buckets)[("M", run_id)]
    assert got == want

def test_wide_buckets_are_snapped_to_blocks_and_narrow_ones_are_not():
    from keel.store.records import METRIC_BLOCK, bucket_edges

    wide = bucket_edges(-650.5, 100_000.0, 300, snap=True)
    assert wide[0] == -650 and wide[-1] == 100_001 and len(wide) == 301
    assert all(e % METRIC_BLOCK == 0 for e in wide[1:-1]) and wide == sorted(set(wide))
    assert bucket_edges(0.0, 1000.0, 100, snap=True) == bucket_edges(0.0, 1000.0, 100)

def test_bucketing_runs_without_the_metric_gives_empty_series(md):
    run_id = md.runs.new_run("M", params={})
    got = md.metrics.bucketed_runs([("M", run_id), ("Other", 7)], "loss", 10)
    assert [g.count for g in got.values()] == [0, 0]


def test_runs_bucketed_in_slices_on_parallel_connections_agree(md, monkeypatch):
    import keel.store.metrics as sql_metrics
    from keel.store.records import bucket_runs

    monkeypatch.setattr(sql_metrics, "_SLICE_RUNS", 1)
    monkeypatch.setattr(sql_metrics, "_PASS_THREADS", 3)
    keys = _runs_series(md)
    got = md.metrics.bucketed_runs(keys, "loss", 30)
    want = bucket_runs({k: md.metrics.run_metrics(*k, "loss").get("loss", []) for k in keys}, 30)
    assert [(g.count, g.x) for g in got.values()] == [(w.count, w.x) for w in want.values()]
    for g, w in zip(got.values(), want.values()):
        assert g.last == pytest.approx(w.last)


def test_write_batch_takes_only_write_records(md):
    run_id = md.runs.new_run("W", params={})
    legacy = ("metrics", [{"flow": "W", "run_id": run_id, "task_id": 1, "name": "acc", "step": 0, "value": 1.0,
                           "ts": 0.0}])
    with pytest.raises(TypeError, match=r"write records of keel\.store\.records .*not tuple"):
        md.runs.write_batch([_task("W", run_id, 1, "start", "running"), legacy])
    assert md.runs.list_tasks("W", run_id) == []  # nothing of the refused batch is kept
    assert md.metrics.run_metrics("W", run_id) == {}
