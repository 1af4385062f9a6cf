"""Delivering the outbox to real receivers: a webhook on loopback, aiosmtpd, a shell command."""

from __future__ import annotations

import json

from alerts_kit import SECRET, poll

from keel.alerts import Rule, send_test
from keel.alerts.engine import AlertEngine
from keel.alerts.outbox import deliver_due
from keel.store.memory import MemoryMetadata
from keel.store.metadata import MetadataStore


def _fail_a_run(md, rules):
    engine = AlertEngine(rules, md)
    run = md.runs.new_run("Train", params={})
    md.runs.set_run_status("Train", run, "failed", error="ValueError: bad")
    engine.on_events(md.events.read(0))
    return run


def test_a_webhook_gets_a_signed_slack_compatible_body_with_a_delivery_id(webhook, tmp_path):
    md = MetadataStore(f"sqlite:///{tmp_path}/md.db")
    rule = Rule(name="train-failed", when={"event": "failed", "flow": "Train"},
                notify=[{"webhook": webhook.url, "secret": SECRET}])
    run = _fail_a_run(md, [rule])
    assert deliver_due(md) == 1
    [body] = webhook.wait_for(1)
    assert webhook.bad_signatures == 0 and webhook.duplicates == 0
    assert body["text"] == f"[keel] train-failed: Train/{run}: the run failed: ValueError: bad"
    assert (body["rule"], body["flow"], body["run_id"]) == ("train-failed", "Train", run)
    [firing] = md.alerts.firings()
    [delivery] = md.alerts.deliveries(firing.id)
    assert (delivery.status, delivery.attempts, body["delivery_id"]) == ("delivered", 1, str(delivery.id))
    assert deliver_due(md) == 0   # nothing left


def test_a_failing_webhook_is_retried_with_backoff_until_it_answers(webhook, monkeypatch):
    monkeypatch.setenv("KEEL_ALERT_RETRY_SECONDS", "10")
    md = MemoryMetadata()
    webhook.fail_next = 2
    _fail_a_run(md, [Rule(name="r", when={"event": "failed"}, notify=[{"webhook": webhook.url, "secret": SECRET}])])
    [firing] = md.alerts.firings()
    t0 = md.alerts.deliveries(firing.id)[0].next_at
    assert deliver_due(md, now=t0) == 0
    [d] = md.alerts.deliveries(firing.id)
    assert (d.status, d.attempts) == ("pending", 1) and "HTTP Error 500" in d.last_error
    assert deliver_due(md, now=t0 + 1) == 0          # not due yet: the backoff holds it
    first_retry = d.next_at
    assert deliver_due(md, now=first_retry) == 0     # second try fails too: the wait doubles
    [d] = md.alerts.deliveries(firing.id)
    assert d.next_at - first_retry >= 19.0
    assert deliver_due(md, now=d.next_at) == 1
    assert webhook.requests == 3 and len(webhook.wait_for(1)) == 1
    assert md.alerts.deliveries(firing.id)[0].status == "delivered"


def test_a_delivery_fails_for_good_after_its_last_attempt(monkeypatch):
    monkeypatch.setenv("KEEL_ALERT_MAX_ATTEMPTS", "2")
    md = MemoryMetadata()
    _fail_a_run(md, [Rule(name="r", when={"event": "failed"}, notify=[{"command": "exit 3"}])])
    deliver_due(md, now=2e9)
    deliver_due(md, now=3e9)
    [d] = md.alerts.deliveries(1)
    assert (d.status, d.attempts) == ("failed", 2) and "exited with 3" in d.last_error


def test_an_email_goes_through_the_smtp_server(smtp):
    md = MemoryMetadata()
    _fail_a_run(md, [Rule(name="mail", when={"event": "failed"}, notify=[{"email": "ml@example.com"}])])
    assert deliver_due(md) == 1
    [envelope] = smtp
    assert envelope.rcpt_tos == ["ml@example.com"]
    text = envelope.content.decode()
    assert "Subject: [keel] mail: Train/1: the run failed" in text and "X-Keel-Delivery: 1" in text


def test_a_command_gets_the_alert_in_its_environment(tmp_path):
    md = MemoryMetadata()
    out = tmp_path / "alert.json"
    _fail_a_run(md, [Rule(name="cmd", when={"event": "failed"},
                          notify=[{"command": f'printf "%s" "$KEEL_ALERT_JSON" > {out}'}])])
    assert deliver_due(md) == 1
    body = json.loads(out.read_text())
    assert (body["rule"], body["run_id"], body["delivery_id"]) == ("cmd", 1, "1")


def test_keel_alerts_test_sends_through_every_action(webhook, smtp):
    rule = Rule(name="t", when={"event": "failed"}, notify=[{"webhook": webhook.url, "secret": SECRET},
                                                             {"email": "a@example.com"}])
    assert send_test(rule) == []
    [body] = webhook.wait_for(1)
    assert body["fields"] == {"test": True} and webhook.bad_signatures == 0
    poll(lambda: len(smtp) == 1, what="the test email")


def test_an_unreachable_webhook_is_reported_by_the_test():
    rule = Rule(name="t", when={"event": "failed"}, notify=[{"webhook": "http://127.0.0.1:9/x"}])
    [error] = send_test(rule)
    assert error.startswith("notify #1 (webhook): URLError")
