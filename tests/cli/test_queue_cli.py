"""`keel queue list / peek / purge` over the queues of a real KEEL_HOME."""

from __future__ import annotations

import pytest

from keel_testing import run_cli


@pytest.fixture
def filled(keel_home):
    from keel.addons.queue import queue

    q = queue("jobs")
    q.put_many([{"n": 1}, {"n": 2}, {"n": 3}])
    q.put("urgent", priority=9)
    queue("empty").close()
    return keel_home


def test_list_shows_each_queue_with_its_depth_and_state(filled):
    out = run_cli("queue", "list")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert lines["jobs"][1] == "4" and lines["jobs"][-1] == "open"
    assert lines["empty"][1] == "0" and lines["empty"][-1] == "closed"


def test_peek_shows_the_next_messages_in_delivery_order_without_taking_them(filled):
    out = run_cli("queue", "peek", "jobs", "--limit", "2")
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert "'urgent'" in first and "{'n': 1}" in second
    assert run_cli("queue", "list").stdout.count("jobs") == 1
    from keel.addons.queue import queue

    assert queue("jobs").stats().ready == 4


def test_purge_needs_yes_without_a_terminal(filled):
    out = run_cli("queue", "purge", "jobs")
    assert out.returncode == 2
    assert out.stderr.strip() == ("keel: purge deletes every message of queue 'jobs': "
                                  "run keel queue purge jobs --yes to confirm")
    out = run_cli("queue", "purge", "jobs", "--yes")
    assert out.returncode == 0 and "4 message(s) deleted" in out.stdout
    assert "jobs" not in run_cli("queue", "list").stdout


def test_a_bad_queue_url_is_a_usage_error(keel_home):
    out = run_cli("queue", "list", "--url", "mysql://x")
    assert out.returncode == 2
    assert "queue url 'mysql://x': expected redis://HOST:PORT/DB, sqlite:///PATH or memory://" in out.stderr
    assert "Traceback" not in out.stderr
