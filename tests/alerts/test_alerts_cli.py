"""`keel alerts test` and `keel alerts list` through the command line."""

from __future__ import annotations

from alerts_kit import SECRET
from keel_testing import run_cli


def test_keel_alerts_test_sends_a_signed_test_to_the_webhook(keel_home, tmp_path, webhook):
    (tmp_path / "keel.yaml").write_text(f"""\
name: weather
jobs:
  - name: ingest
    entrypoint: "true"
alerts:
  - name: ingest-failed
    when: {{event: failed, job: ingest}}
    notify: [{{webhook: "{webhook.url}", secret: {SECRET}}}]
""")
    done = run_cli("alerts", "test", "ingest-failed", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sent a test of alert rule 'ingest-failed' through 1 action(s)"
    [body] = webhook.wait_for(1)
    assert body["rule"] == "ingest-failed" and webhook.bad_signatures == 0


def test_an_unknown_rule_is_a_usage_error_that_names_the_rules(keel_home, tmp_path):
    (tmp_path / "rules.yaml").write_text("alerts:\n  - name: a\n    when: {event: failed}\n"
                                         "    notify: [{command: 'true'}]\n")
    done = run_cli("alerts", "test", "b", env={"KEEL_ALERTS": str(tmp_path / "rules.yaml")}, cwd=tmp_path)
    assert done.returncode == 2
    assert "no alert rule 'b'; rules are: a" in done.stderr and "Traceback" not in done.stderr


def test_keel_alerts_list_without_rules_says_how_to_add_them(keel_home, tmp_path):
    done = run_cli("alerts", "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no alert rules: add alerts: to keel.yaml, or set KEEL_ALERTS=rules.yaml" in done.stdout
