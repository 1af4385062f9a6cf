"""The engine on the in-memory store: which events, series and clocks make a rule fire, once."""

from __future__ import annotations

import random

import pytest

from keel.alerts import Rule
from keel.alerts.engine import AlertEngine, breaches
from keel.errors import AlertError
from keel.store.memory import MemoryMetadata
from keel.store.records import EventWrite, MetricsWrite, TaskWrite

HOOK = [{"webhook": "http://127.0.0.1:9/hook"}]


def _rule(name: str = "r", cooldown: float = 0.0, **when) -> Rule:
    return Rule(name=name, when=when, notify=HOOK, cooldown=cooldown)


def _new_events(md, engine, cursor=0):
    events = md.events.read(cursor)
    engine.on_events(events)
    return events[-1].id if events else cursor


def test_a_failed_run_fires_its_rule_once_even_when_evaluated_twice():
    md = MemoryMetadata()
    engine = AlertEngine([_rule(event="failed", flow="Train")], md)
    run = md.runs.new_run("Train", params={})
    md.runs.set_run_status("Train", run, "failed", error="ValueError: bad")
    _new_events(md, engine)
    _new_events(md, engine)
    [firing] = md.alerts.firings()
    assert (firing.rule, firing.flow, firing.run_id, firing.key) == ("r", "Train", run, "run")
    assert "failed: ValueError: bad" in firing.summary
    assert [d.status for d in md.alerts.deliveries(firing.id)] == ["pending"]


def test_a_rule_scoped_to_another_flow_does_not_fire():
    md = MemoryMetadata()
    engine = AlertEngine([_rule(event="failed", flow="Other"), _rule("s", event="succeeded", flow="Train")], md)
    run = md.runs.new_run("Train", params={})
    md.runs.set_run_status("Train", run, "failed")
    _new_events(md, engine)
    assert md.alerts.firings() == []


def test_a_step_scoped_rule_fires_per_failed_task_and_on_retries():
    md = MemoryMetadata()
    engine = AlertEngine([_rule("f", event="failed", step="part"), _rule("rt", event="retried", step="part")], md)
    run = md.runs.new_run("Flow", params={})
    md.runs.write_batch([TaskWrite("Flow", run, 2, "part", "running", 1, 0.0),
                         EventWrite("Flow", run, "task.retried", step="part", task_id=2, attempt=1),
                         TaskWrite("Flow", run, 2, "part", "failed", 2, 0.0),
                         TaskWrite("Flow", run, 3, "other", "failed", 1, 0.0)])
    _new_events(md, engine)
    assert sorted((f.rule, f.key) for f in md.alerts.firings()) == [("f", "task:2"), ("rt", "retry:2:1")]


def test_the_cooldown_holds_back_a_second_firing_of_the_rule():
    md = MemoryMetadata()
    engine = AlertEngine([_rule(event="failed", cooldown=600)], md)
    for _ in range(3):
        md.runs.set_run_status("F", md.runs.new_run("F", params={}), "failed")
    _new_events(md, engine)
    assert [f.run_id for f in md.alerts.firings()] == [1]


def test_a_long_run_fires_once_its_duration_is_past_and_not_before():
    md = MemoryMetadata()
    engine = AlertEngine([_rule(event="running_longer_than", flow="F", seconds=30)], md)
    run = md.runs.new_run("F", params={})
    start = md.runs.get_run("F", run).created_at
    assert engine.check_clock(start + 29.0, flow="F", run_id=run) == []
    [firing] = engine.check_clock(start + 30.5, flow="F", run_id=run)
    assert firing.key == "long" and "still running after 30.5 s (limit 30.0 s)" in firing.summary
    assert engine.check_clock(start + 40.0, flow="F", run_id=run) == []


def test_a_schedule_that_did_not_run_fires_once_per_missed_time():
    md = MemoryMetadata()
    engine = AlertEngine([_rule(event="missed_schedule", job="ingest", seconds=5)], md)
    schedules = [("proj", "ingest", "* * * * *", 0.0)]
    now = 1_800_000_000.0 + 60 * 7 + 10  # 10 s past a minute: the minute's fire is overdue by 10 s
    due = now - 10
    [firing] = engine.check_clock(now, schedules=schedules)
    assert (firing.flow, firing.run_id, firing.key) == ("proj", 0, f"schedule:{due:.0f}")
    assert engine.check_clock(now + 1, schedules=schedules) == []
    md.schedules.claim_fire("proj", "ingest", due + 60)
    assert engine.check_clock(now + 60, schedules=schedules) == []   # that minute ran


def test_a_rule_built_wrong_in_python_says_what_is_missing():
    with pytest.raises(AlertError, match="running_longer_than needs a duration"):
        Rule(name="x", when={"event": "running_longer_than"}, notify=HOOK)
    with pytest.raises(AlertError, match="exactly one of webhook:, email: or command:"):
        Rule(name="x", when={"event": "failed"}, notify=[{"webhook": "http://h/x", "command": "true"}])


# -- metric thresholds: a randomized check against a direct reading of the definition ----------

def _expected(when: dict, values: list[float]) -> bool:
    n = when.get("consecutive", 1)
    if when.get("relative"):
        xs = [(b - a) / abs(a) for a, b in zip(values, values[1:])]
    else:
        agg = when.get("agg", "last")
        xs = [values[i] if agg == "last" else (min if agg == "min" else max)(values[:i + 1])
              for i in range(len(values))]
    flags = [x < when["below"] if "below" in when else x > when["above"] for x in xs]
    return any(all(flags[i:i + n]) for i in range(len(flags) - n + 1))


def test_randomized_metric_series_fire_exactly_when_they_break_the_threshold():
    rng = random.Random(14)
    md = MemoryMetadata()
    rules, cases = [], []
    for i in range(200):
        when = {"event": "metric", "flow": f"F{i}", "metric": "acc", "agg": rng.choice(["last", "min", "max"]),
                "consecutive": rng.choice([1, 1, 2, 3])}
        threshold = 0.8
        if rng.random() < 0.2:
            when["relative"] = True
            threshold = rng.choice([-0.05, 0.05])
        when["below" if rng.random() < 0.5 else "above"] = threshold
        values = [round(0.8 + rng.uniform(-0.06, 0.06), 3) if not when.get("relative")
                  else round(rng.uniform(0.5, 1.0), 3) for _ in range(rng.randint(1, 12))]
        values = [v if v != threshold else v + 0.001 for v in values]
        rules.append(_rule(f"r{i}", **when))
        cases.append((when, values))
    engine = AlertEngine(rules, md)
    cursor = 0
    for i, (when, values) in enumerate(cases):
        run = md.runs.new_run(f"F{i}", params={})
        for j, chunk in enumerate([values[:len(values) // 2], values[len(values) // 2:]]):  # two tasks
            md.runs.write_batch([MetricsWrite(f"F{i}", run, j + 1, tuple(("acc", k, v, 0.0) for k, v in enumerate(chunk))),
                                 TaskWrite(f"F{i}", run, j + 1, "start", "succeeded", 1, 0.0)])
            cursor = _new_events(md, engine, cursor)
        md.runs.set_run_status(f"F{i}", run, "succeeded")
        cursor = _new_events(md, engine, cursor)
    fired = [f.rule for f in md.alerts.firings(limit=None)]
    expected = {f"r{i}" for i, (when, values) in enumerate(cases) if _expected(when, values)}
    assert len(fired) == len(set(fired)), "a rule fired twice for one run"
    assert set(fired) - expected == set(), "false alerts"
    assert expected - set(fired) == set(), "missed alerts"
    assert 40 < len(expected) < 160   # the series straddle the thresholds


def test_breaches_counts_consecutive_points():
    rule = _rule(event="metric", metric="m", below=1.0, consecutive=2).when
    assert not breaches(rule, [0.5, 2.0, 0.5])
    assert breaches(rule, [2.0, 0.5, 0.4])


def test_a_run_whose_scheduler_is_gone_is_recorded_crashed_once_and_fires_the_crashed_rule_once():
    from keel.store.crashes import settle_crashed_runs

    md = MemoryMetadata()
    engine = AlertEngine([_rule(event="crashed", flow="F")], md)
    alive = md.runs.new_run("F", params={})
    gone = md.runs.new_run("F", params={})
    scheduler = md.runs.t.runs[("F", gone)]["environment"]["scheduler"]
    scheduler["started"] = scheduler.get("started", 0.0) - 1000.0   # that pid is another process now
    assert [r.run_id for r in settle_crashed_runs(md)] == [gone]
    assert settle_crashed_runs(md) == []                            # whoever notices next: already recorded
    assert [e.run_id for e in md.events.read(0) if e.kind == "run.crashed"] == [gone]
    _new_events(md, engine)
    _new_events(md, engine)
    [firing] = md.alerts.firings()
    assert (firing.run_id, firing.key) == (gone, "run") and "crashed" in firing.summary
    assert md.runs.get_run("F", gone).status == "crashed" and md.runs.get_run("F", alive).status == "running"


def test_a_crashed_rule_of_a_step_fires_for_each_of_its_tasks_that_ran_when_the_scheduler_died():
    from keel.store.crashes import settle_crashed

    md = MemoryMetadata()
    engine = AlertEngine([_rule(event="crashed", flow="F", step="train")], md)
    run_id = md.runs.new_run("F", params={})
    md.runs.write_batch([TaskWrite("F", run_id, task_id, step, status="running", attempts=1, created_at=1.0)
                         for task_id, step in ((1, "train"), (2, "train"), (3, "score"))])
    assert settle_crashed(md, md.runs.get_run("F", run_id))
    _new_events(md, engine)
    _new_events(md, engine)
    assert sorted(f.key for f in md.alerts.firings()) == ["task:1", "task:2"]
    assert all("step 'train'" in f.summary and "crashed" in f.summary for f in md.alerts.firings())


def test_a_run_found_crashed_by_two_noticers_at_once_gets_one_crashed_event(tmp_path):
    from keel.store.crashes import settle_crashed
    from keel.store.metadata import MetadataStore

    md = MetadataStore(f"sqlite:///{tmp_path}/m.db")
    run = md.runs.get_run("F", md.runs.new_run("F", params={}))
    assert [settle_crashed(md, run), settle_crashed(md, run)] == [True, False]
    assert [e.kind for e in md.events.read(0)] == ["run.started", "run.crashed"]


def test_a_watcher_restarted_resumes_at_its_saved_cursor_and_fires_each_event_once():
    from keel.alerts.watch import Watcher

    md = MemoryMetadata()
    rules = [_rule(event="failed")]
    md.runs.set_run_status("A", md.runs.new_run("A", params={}), "failed")   # before any watcher: not its business
    first = Watcher(rules, md, name="w")
    md.runs.set_run_status("B", md.runs.new_run("B", params={}), "failed")
    first.tick()
    md.runs.set_run_status("C", md.runs.new_run("C", params={}), "failed")   # written while no watcher runs
    assert [f.flow for f in md.alerts.firings()] == ["B"]
    Watcher(rules, md, name="w").tick()
    Watcher(rules, md, name="w").tick()
    assert sorted(f.flow for f in md.alerts.firings(limit=None)) == ["B", "C"]
    assert md.alerts.cursor("w") == md.events.last_id()


def test_an_event_firing_saves_the_cursor_just_before_its_event_in_its_own_transaction():
    md = MemoryMetadata()
    engine = AlertEngine([_rule(event="failed"), _rule("second", event="failed")], md, cursor="w")
    md.runs.set_run_status("A", md.runs.new_run("A", params={}), "failed")
    engine.on_events(md.events.read(0))
    # killed now, a restart reads the failed event again: its second rule is evaluated too
    assert md.alerts.cursor("w") == md.events.last_id() - 1
