"""Queue commands: ``keel queue list``, ``keel queue peek NAME``, ``keel queue purge NAME``.

They open the queues of KEEL_HOME (or ``--url`` / ``KEEL_QUEUE_URL``, e.g. ``redis://...``).
"""

from __future__ import annotations

import pickle
import sys
import time
from typing import Any

import click

from keel.cli.types import COUNT

_URL = click.option("--url", default=None, metavar="URL",
                    help="the queue backend (default: KEEL_QUEUE_URL, else SQLite in KEEL_HOME)")


def _backend(url: str | None) -> Any:
    from keel.addons.queue import QueueSettings
    from keel.store.queues import open_backend

    return open_backend(QueueSettings.from_env(url=url).url)


@click.group()
def queue() -> None:
    """Queues of the queue add-on: list them, look at the next messages, empty one."""


@queue.command("list")
@_URL
def list_queues(url: str | None) -> None:
    """Every queue with its depth (ready + delayed), messages in flight, lag and whether it is closed."""
    from keel.cli.main import _guard

    def go() -> int:
        rows = _backend(url).queues()
        if not rows:
            click.echo("no queues yet; a step or job makes one with current.queue(NAME).put(...)")
            return 0
        now = time.time()
        click.echo(f"{'QUEUE':<28} {'READY':>8} {'DELAYED':>8} {'IN FLIGHT':>9} {'LAG (s)':>9}  STATE")
        for s in rows:
            lag = f"{now - s.oldest_enqueued_at:.1f}" if s.oldest_enqueued_at else "-"
            click.echo(f"{s.name:<28} {s.ready:>8} {s.delayed:>8} {s.in_flight:>9} {lag:>9}  "
                       f"{'closed' if s.closed else 'open'}")
        return 0

    _guard(go)


def _show(body: bytes) -> str:
    try:
        text = repr(pickle.loads(body))
    except Exception:
        text = f"<{len(body)} bytes, not a Python object>"
    return text if len(text) <= 200 else text[:197] + "..."


@queue.command()
@click.argument("name")
@click.option("--limit", default=10, show_default=True, type=COUNT, help="how many messages")
@_URL
def peek(name: str, limit: int, url: str | None) -> None:
    """The next messages of queue NAME, in delivery order, without taking them."""
    from keel.cli.main import _guard

    def go() -> int:
        messages = _backend(url).peek(name, limit)
        if not messages:
            click.echo(f"queue {name!r} is empty")
            return 0
        for m in messages:
            click.echo(f"{m.id}  deliveries={m.deliveries}  {_show(m.body)}")
        return 0

    _guard(go)


@queue.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="do not ask; needed when the input is not a terminal")
@_URL
def purge(name: str, yes: bool, url: str | None) -> None:
    """Delete every message of queue NAME (and its idempotency keys and closed flag)."""
    from keel.cli.main import _guard
    from keel.errors import UsageError

    def go() -> int:
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"purge deletes every message of queue {name!r}: "
                                 f"run keel queue purge {name} --yes to confirm")
            click.confirm(f"Delete every message of queue {name!r}?", abort=True)
        gone = _backend(url).purge(name)
        click.echo(f"purged queue {name!r}: {gone} message(s) deleted")
        return 0

    _guard(go)


def register(cli: click.Group) -> None:
    cli.add_command(queue)
