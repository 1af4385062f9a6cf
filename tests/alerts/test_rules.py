"""Rules from keel.yaml and from a KEEL_ALERTS file: every mistake at once, with its line."""

from __future__ import annotations

import textwrap

import pytest

from keel.alerts import active_rules, load_rules
from keel.errors import ProjectError
from keel.flow.project import load_project

GOOD = """\
alerts:
  - name: train-failed
    when: {event: failed, flow: Train}
    notify: [{webhook: "https://hooks.example/x", secret: s}, {email: ml@example.com}]
    cooldown: 10m
  - name: slow-ingest
    when: {event: running_longer_than, job: ingest, minutes: 30}
    notify: [{command: "echo slow"}]
"""


def test_a_rules_file_is_read_into_rules(tmp_path, monkeypatch):
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    monkeypatch.setenv("KEEL_ALERTS", str(path))
    rules = active_rules()
    assert [r.name for r in rules] == ["train-failed", "slow-ingest"]
    assert rules[0].cooldown == 600 and rules[1].when.duration == 1800
    assert [a.kind for a in rules[0].notify] == ["webhook", "email"]


def test_every_mistake_of_a_rules_file_is_reported_with_its_line(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent("""\
        alerts:
          - name: a
            when: {event: faild}
            notify: [{webhook: "https://h/x"}]
          - name: b
            when: {event: running_longer_than}
            notify: [{webhook: "ftp://h/x"}]
          - name: c
            when: {event: metric, metric: acc}
            notify: []
            cooldwn: 5m
        """))
    with pytest.raises(ProjectError) as err:
        load_rules(str(path))
    text = str(err.value)
    lines = [(i.line, i.message) for i in err.value.issues]
    assert any(line == 3 and "alert 'a': when.event" in m and "'failed'" in m for line, m in lines), text
    assert (6, "alert 'b': when: running_longer_than needs a duration: hours:, minutes: or seconds:") in lines
    assert (7, "alert 'b': notify #1: webhook must be an http:// or https:// URL") in lines
    assert any(line == 11 and "unknown key 'cooldwn'. Did you mean 'cooldown'?" in m for line, m in lines), text
    assert any(line == 10 and "alert 'c': notify" in m for line, m in lines), text


def test_project_alerts_are_checked_with_the_jobs(tmp_path):
    path = tmp_path / "keel.yaml"
    path.write_text(textwrap.dedent("""\
        name: weather
        jobs:
          - name: ingest
            entrypoint: python ingest.py
            schedule: "0 * * * *"
        alerts:
          - name: late
            when: {event: missed_schedule, job: ingst}
            notify: [{command: "true"}]
        """))
    with pytest.raises(ProjectError) as err:
        load_project(str(path))
    [issue] = err.value.issues
    assert issue.line == 8
    assert issue.message == ("alert 'late': when: job 'ingst' is not a job of this project. "
                             "Did you mean 'ingest'? Jobs are: ingest")


def test_a_project_keeps_its_alert_rules(tmp_path):
    path = tmp_path / "keel.yaml"
    path.write_text("name: w\njobs:\n  - name: ingest\n    entrypoint: 'true'\n" + GOOD.replace("job: ingest", "job: ingest"))
    project = load_project(str(path))
    assert [r.name for r in project.alerts] == ["train-failed", "slow-ingest"]


def test_a_bad_rules_file_stops_a_flow_run_before_it_starts(keel_home, tmp_path):
    from keel_testing import FLOWS, run_cli

    (tmp_path / "rules.yaml").write_text("alerts:\n  - name: a\n    when: {event: faild}\n    notify: [{command: 'true'}]\n")
    done = run_cli(str(FLOWS / "linear.py"), "run", env={"KEEL_ALERTS": str(tmp_path / "rules.yaml")})
    assert done.returncode != 0
    assert "rules.yaml:3: alert 'a': when.event" in done.stderr and "Traceback" not in done.stderr
    assert not (keel_home / "metadata.db").exists() or "Run LinearFlow/1 started" not in done.stdout
