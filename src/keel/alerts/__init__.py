"""Alerts: rules that watch runs, and notifications delivered through the store's outbox.

Rules come from keel.yaml (``alerts:``), from a ``KEEL_ALERTS=rules.yaml`` file for plain
flows, or from Python::

    import keel.alerts as alerts
    alerts.register(alerts.Rule(name="train-failed", when={"event": "failed", "flow": "Train"},
                                notify=[{"webhook": "https://hooks.example/x", "secret": "s3cret"}]))

A run evaluates the rules for its own events (``watch.RunAlerts``); ``keel alerts watch`` and
``keel scheduler`` evaluate the clock (runs longer than allowed, crashes, missed schedules) for
the whole store and deliver what is left in the outbox. See ``engine`` and ``outbox``.
"""

from __future__ import annotations

from typing import Any

from keel.flow.alert_rules import Action, Rule, When
from keel.settings import Settings

__all__ = ["Action", "Rule", "When", "active_rules", "load_rules", "register", "send_test"]

_registered: list[Rule] = []


def register(*rules: Rule) -> None:
    """Add rules for the runs this process starts (beside ``KEEL_ALERTS`` and keel.yaml's)."""
    _registered.extend(rules)


def load_rules(path: str) -> list[Rule]:
    """The rules of an alerts file, checked (``ProjectError`` lists every mistake with its line)."""
    from keel.flow.project import load_alert_rules

    return load_alert_rules(path)


def active_rules(extra: list[Rule] | None = None) -> list[Rule]:
    """The rules for a run started now: registered ones, ``KEEL_ALERTS``'s, then ``extra``."""
    rules = list(_registered)
    path = Settings.from_env().alerts_file
    if path:
        rules.extend(load_rules(path))
    rules.extend(extra or [])
    return rules


def send_test(rule: Rule) -> list[str]:
    """Send a test notification through each of the rule's actions now; the errors, if any."""
    import time

    from keel.alerts.outbox import send
    from keel.store.records import Firing

    firing = Firing(id=0, rule=rule.name, flow="test", run_id=0, key=f"test:{time.time():.0f}",
                    fired_at=time.time(), summary=f"a test of alert rule {rule.name!r}", fields={"test": True})
    errors = []
    for i, action in enumerate(rule.notify):
        try:
            send(firing, action.target(), delivery_id=f"test-{rule.name}-{i}-{time.time_ns()}")
        except Exception as exc:  # noqa: BLE001 - each action's failure is reported
            errors.append(f"notify #{i + 1} ({action.kind}): {type(exc).__name__}: {exc}")
    return errors
