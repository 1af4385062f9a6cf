"""Alerts of real runs: flows that fail, log metrics and run long, delivered to a real webhook;
an evaluator killed with SIGKILL between firing and delivery, then restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from alerts_kit import SECRET, poll
from keel_testing import run_cli, write_flow

FAILING = """
    from keel import FlowSpec, step, current

    class Failing(FlowSpec):
        @step
        def start(self):
            for i, v in enumerate([0.9, 0.7, 0.6]):
                current.log_metric("acc", v, step=i)
            self.next(self.end)

        @step
        def end(self):
            raise ValueError("the data is bad")

    if __name__ == "__main__":
        Failing()
"""

SLOW = """
    import time
    from keel import FlowSpec, step

    class Slow(FlowSpec):
        @step
        def start(self):
            time.sleep(4)
            self.next(self.end)

        @step
        def end(self):
            pass

    if __name__ == "__main__":
        Slow()
"""


def _rules(tmp_path, webhook, body: str) -> dict[str, str]:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(body).replace("URL", webhook.url).replace("SECRET", SECRET))
    return {"KEEL_ALERTS": str(path)}


@pytest.mark.slow
def test_a_failed_run_and_its_metric_alert_reach_the_webhook_once(keel_home, tmp_path, webhook):
    env = _rules(tmp_path, webhook, """
        alerts:
          - name: failed
            when: {event: failed, flow: Failing}
            notify: [{webhook: URL, secret: SECRET}]
          - name: acc-drop
            when: {event: metric, flow: Failing, metric: acc, below: 0.75, consecutive: 2}
            notify: [{webhook: URL, secret: SECRET}]
          - name: succeeded
            when: {event: succeeded}
            notify: [{webhook: URL, secret: SECRET}]
        """)
    flow = write_flow(tmp_path, "failing", FAILING)
    done = run_cli(str(flow), "run", env=env)
    assert done.returncode == 1, done.stderr
    bodies = webhook.wait_for(2)
    assert sorted(b["rule"] for b in bodies) == ["acc-drop", "failed"]
    assert webhook.duplicates == 0 and webhook.bad_signatures == 0
    assert next(b for b in bodies if b["rule"] == "failed")["summary"].endswith("ValueError: the data is bad")
    listed = run_cli("alerts", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "acc-drop: when metric flow=Failing -> webhook" in listed.stdout
    assert "[webhook delivered]" in listed.stdout


@pytest.mark.serial  # a wall-time bound that is part of the behaviour: run alone
@pytest.mark.slow
def test_a_long_run_is_reported_while_it_still_runs(keel_home, tmp_path, webhook):
    env = _rules(tmp_path, webhook, """
        alerts:
          - name: slow
            when: {event: running_longer_than, flow: Slow, seconds: 1.5}
            notify: [{webhook: URL, secret: SECRET}]
        """)
    flow = write_flow(tmp_path, "slow", SLOW)
    proc = subprocess.Popen([sys.executable, str(flow), "run"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        [body] = webhook.wait_for(1, timeout=30)
        arrived = webhook.arrived[0]
        assert proc.poll() is None, "the alert came only after the run ended"
    finally:
        assert proc.wait(timeout=60) == 0
    from keel.store import Store

    run = Store.from_env().metadata.runs.get_run("Slow", 1)
    assert body["rule"] == "slow" and "still running after" in body["summary"]
    assert 1.5 <= arrived - run.created_at < 2.5   # within a second of the deadline


EVALUATOR = """
import sys, time
from keel.alerts import load_rules
from keel.alerts.engine import AlertEngine
from keel.store import Store

md = Store.from_env().metadata
engine = AlertEngine(load_rules(sys.argv[1]), md)
engine.on_events(md.events.read(0, limit=None))        # firings recorded: the outbox holds them
if sys.argv[2] == "claim":
    md.alerts.claim(lease=1.0)                          # ...and this one even holds their lease
print("ready", flush=True)
time.sleep(600)                                         # killed here, before delivering anything
"""


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["fired", "claim"])
def test_an_evaluator_killed_before_delivering_loses_and_duplicates_nothing(keel_home, tmp_path, webhook, stage):
    from keel.alerts import load_rules
    from keel.alerts.watch import Watcher
    from keel.store import Store

    env = _rules(tmp_path, webhook, """
        alerts:
          - name: any-failure
            when: {event: failed}
            notify: [{webhook: URL, secret: SECRET}]
        """)
    md = Store.from_env().metadata
    for i in range(5):
        md.runs.set_run_status(f"F{i}", md.runs.new_run(f"F{i}", params={}), "failed", error="boom")
    script = tmp_path / "evaluator.py"
    script.write_text(EVALUATOR)
    proc = subprocess.Popen([sys.executable, str(script), env["KEEL_ALERTS"], stage], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(md.alerts.firings()) == 5 and webhook.requests == 0
    # restarted: a watcher re-reads every event (firing again is a no-op) and delivers the outbox
    watcher = Watcher(load_rules(env["KEEL_ALERTS"]), md, from_start=True)
    poll(lambda: watcher.tick() or len(webhook.bodies) >= 5, timeout=60, what="5 deliveries")
    for _ in range(3):
        watcher.tick()
    assert len(webhook.bodies) == 5 and webhook.duplicates == 0
    assert len(md.alerts.firings()) == 5
    assert sorted(b["flow"] for b in webhook.bodies) == [f"F{i}" for i in range(5)]


@pytest.mark.slow
def test_a_project_job_that_fails_fires_the_project_rule(keel_home, tmp_path, webhook):
    (tmp_path / "keel.yaml").write_text(textwrap.dedent(f"""\
        name: weather
        jobs:
          - name: ingest
            entrypoint: "exit 3"
          - name: report
            entrypoint: "true"
        alerts:
          - name: ingest-failed
            when: {{event: failed, job: ingest}}
            notify: [{{webhook: "{webhook.url}", secret: {SECRET}}}]
          - name: report-failed
            when: {{event: failed, job: report}}
            notify: [{{webhook: "{webhook.url}", secret: {SECRET}}}]
        """))
    done = run_cli("project", "run", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    [body] = webhook.wait_for(1)
    assert (body["rule"], body["flow"], body["fields"]["step"]) == ("ingest-failed", "weather", "ingest")
    assert webhook.duplicates == 0 and webhook.bad_signatures == 0


HANGING = """
    import time
    from keel import FlowSpec, step

    class Hanging(FlowSpec):
        @step
        def start(self):
            time.sleep(60)
            self.next(self.end)

        @step
        def end(self):
            pass

    if __name__ == "__main__":
        Hanging()
"""


@pytest.mark.slow
def test_a_run_whose_orchestrator_is_killed_is_recorded_crashed_once_and_alerted_once(keel_home, tmp_path, webhook):
    from keel.alerts import load_rules
    from keel.alerts.watch import Watcher
    from keel.store import Store
    from keel.store.crashes import settle_crashed_runs

    env = _rules(tmp_path, webhook, """
        alerts:
          - name: crashed
            when: {event: crashed, flow: Hanging}
            notify: [{webhook: URL, secret: SECRET}]
        """)
    md = Store.from_env().metadata
    watcher = Watcher(load_rules(env["KEEL_ALERTS"]), md, name="test")   # from now on
    flow = write_flow(tmp_path, "hanging", HANGING)
    proc = subprocess.Popen([sys.executable, str(flow), "run"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll(lambda: any(t.status == "running" for t in md.runs.list_tasks("Hanging", 1)), timeout=120,
             what="the start task running")
        watcher.tick()
        assert md.runs.get_run("Hanging", 1).status == "running" and webhook.requests == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    poll(lambda: watcher.tick() or webhook.bodies, timeout=60, what="the crash notification")
    assert settle_crashed_runs(md) == []      # another noticer after the watcher: nothing more to record
    for _ in range(3):
        watcher.tick()
    assert [e.kind for e in md.events.read(0, flow="Hanging") if e.kind.startswith("run.")] == \
        ["run.started", "run.crashed"]
    [body] = webhook.bodies
    assert body["rule"] == "crashed" and body["run_id"] == 1 and webhook.duplicates == 0
    run = md.runs.get_run("Hanging", 1)
    assert run.status == "crashed" and "SchedulerCrashed" in (run.error or "")
    assert [t.status for t in md.runs.list_tasks("Hanging", 1)] == ["crashed"]
