"""Alert commands: ``keel alerts list``, ``keel alerts test NAME``, ``keel alerts watch``.

Rules come from ``-f keel.yaml`` (when the file is there) and ``KEEL_ALERTS``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import click

_FILE = click.option("-f", "--file", "path", default="keel.yaml", show_default=True, metavar="PATH",
                     help="the project file whose alerts: to use (skipped when it does not exist)")


def _rules(path: str) -> tuple[list[Any], list[tuple[str, str, str]]]:
    from keel.alerts import active_rules
    from keel.flow.project import load_project

    project = load_project(path) if os.path.isfile(path) else None
    rules = active_rules(list(project.alerts) if project else [])
    schedules = [(project.name, j, project.jobs[j].schedule or "") for j in project.scheduled] if project else []
    return rules, schedules


@click.group()
def alerts() -> None:
    """Alert rules: list them with their last firings, send a test, watch the store."""


@alerts.command("list")
@_FILE
@click.option("--limit", default=5, show_default=True, help="firings shown per rule")
def list_alerts(path: str, limit: int) -> None:
    """Every rule, its last firings and the delivery status of each notification."""
    from keel.cli.main import _guard

    def go() -> int:
        from keel.store import Store

        rules, _ = _rules(path)
        md = Store.from_env().metadata
        names = [r.name for r in rules] + sorted({f.rule for f in md.alerts.firings(limit=1000)} - {r.name for r in rules})
        if not names:
            click.echo(f"no alert rules: add alerts: to {path}, or set KEEL_ALERTS=rules.yaml")
            return 0
        by_name = {r.name: r for r in rules}
        for name in names:
            rule = by_name.get(name)
            what = _describe(rule) if rule else "(no longer defined)"
            click.echo(f"{name}: {what}")
            for f in md.alerts.firings(name, limit=limit):
                states = ", ".join(f"{d.target.get('webhook') and 'webhook' or next(iter(d.target))} {d.status}"
                                   f"{' (' + str(d.attempts) + ' tries)' if d.attempts > 1 else ''}"
                                   for d in md.alerts.deliveries(f.id))
                click.echo(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(f.fired_at))}  {f.summary}"
                           f"  [{states or 'no actions'}]")
        return 0

    _guard(go)


def _describe(rule: Any) -> str:
    w = rule.when
    scope = " ".join(f"{k}={getattr(w, k)}" for k in ("flow", "project", "job", "step") if getattr(w, k))
    actions = ", ".join(a.kind for a in rule.notify)
    return f"when {w.event}{' ' + scope if scope else ''} -> {actions}"


@alerts.command("test")
@_FILE
@click.argument("name")
def test_alert(path: str, name: str) -> None:
    """Send a test notification through every action of rule NAME now."""
    from keel.cli.main import _guard

    def go() -> int:
        from keel.alerts import send_test
        from keel.errors import AlertError, UsageError

        rules, _ = _rules(path)
        rule = next((r for r in rules if r.name == name), None)
        if rule is None:
            known = ", ".join(r.name for r in rules) or "none"
            raise UsageError(f"no alert rule {name!r}; rules are: {known}")
        errors = send_test(rule)
        if errors:
            raise AlertError(f"the test of alert rule {name!r} was not delivered: " + "; ".join(errors))
        click.echo(f"sent a test of alert rule {name!r} through {len(rule.notify)} action(s)")
        return 0

    _guard(go)


@alerts.command("watch")
@_FILE
def watch(path: str) -> None:
    """Evaluate the clock rules over the whole store and deliver the outbox, until Ctrl-C."""
    from keel.cli.main import _guard

    def go() -> int:
        from keel.alerts.watch import Watcher
        from keel.store import Store

        rules, schedules = _rules(path)
        click.echo(f"watching {len(rules)} alert rule(s); Ctrl-C stops")
        try:
            Watcher(rules, Store.from_env().metadata, schedules=schedules).run()
        except KeyboardInterrupt:
            pass
        return 0

    _guard(go)


def register(cli: click.Group) -> None:
    cli.add_command(alerts)
