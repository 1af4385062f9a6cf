"""``keel card view FLOW/RUN/STEP[/TASK] [--id ID] [--out FILE]``: write a task's card to a file."""

from __future__ import annotations

import os
from typing import Any

import click

from keel.errors import NotFoundError, UsageError


def cmd_card_view(pathspec: str, card_id: str | None, out: str | None) -> int:
    from keel.client.core import Run, Task

    pieces = pathspec.strip("/").split("/")
    if len(pieces) == 4:
        task = Task(pathspec)
    elif len(pieces) == 3:
        step = Run("/".join(pieces[:2]))[pieces[2]]
        tasks = list(step)
        if not tasks:
            raise NotFoundError(f"step {pathspec} has no task (it did not run)")
        if len(tasks) > 1:
            ids = ", ".join(str(t.id) for t in tasks[:10])
            raise UsageError(f"step {pathspec} has {len(tasks)} tasks; name one: {pathspec}/TASK (tasks: {ids})")
        task = tasks[0]
    else:
        raise UsageError(f"malformed pathspec {pathspec!r}: expected FLOW/RUN/STEP or FLOW/RUN/STEP/TASK")
    cards = [c for c in task.cards if card_id is None or c.id == card_id]
    if not cards:
        which = f" with id {card_id!r}" if card_id else ""
        raise NotFoundError(f"task {task.pathspec} has no card{which}; add @card to its step to make one")
    path = out or f"{task.pathspec.replace('/', '-')}.html"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(cards[0].html)
    click.echo(os.path.abspath(path))
    return 0


def register(cli: Any) -> None:
    from keel.cli.main import _guard

    @cli.group()
    def card() -> None:
        """Cards made by @card steps."""

    @card.command("view")
    @click.argument("pathspec")
    @click.option("--id", "card_id", default=None, help="the card's id, for a step with several")
    @click.option("--out", default=None, help="the HTML file to write (default: FLOW-RUN-STEP-TASK.html)")
    def view(pathspec: str, card_id: str | None, out: str | None) -> None:
        """Write a task's card to an HTML file and print its path: keel card view FLOW/RUN/STEP."""
        _guard(lambda: cmd_card_view(pathspec, card_id, out))
