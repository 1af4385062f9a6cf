"""``keel cache explain FLOW/RUN/STEP`` and ``keel cache prune --older-than 30d``."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from keel.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not m:
        raise UsageError(f"--older-than expects a number and a unit (s, m, h, d, w), e.g. 30d; got {text[:40]!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _cache_store() -> Any:
    from keel.store import Store

    return Store.from_env().metadata.cache


@click.group()
def cache() -> None:
    """The step cache: why a step ran or was reused, and cleaning old entries."""


@cache.command()
@click.argument("target")
def explain(target: str) -> None:
    """Each part of a step's cache key, and which changed since the last hit (FLOW/RUN/STEP)."""
    from keel.cli.main import _guard
    from keel.runtime.cache import explain as explain_lines

    def go() -> int:
        parts = target.split("/")
        if len(parts) != 3 or not parts[1].isdigit():
            raise UsageError(f"keel cache explain expects FLOW/RUN/STEP, e.g. Train/12/fit; got {target[:80]!r}")
        for line in explain_lines(_cache_store(), parts[0], int(parts[1]), parts[2]):
            click.echo(line)
        return 0

    _guard(go)


@cache.command()
@click.option("--older-than", "older_than", required=True, help="age, e.g. 30d, 12h")
def prune(older_than: str) -> None:
    """Forget cache entries older than an age (the artifacts stay with their runs)."""
    from keel.cli.main import _guard

    def go() -> int:
        cutoff = time.time() - parse_age(older_than)
        n = _cache_store().prune(cutoff)
        click.echo(f"pruned {n} cache entr{'y' if n == 1 else 'ies'} older than {older_than}")
        return 0

    _guard(go)


def register(cli: click.Group) -> None:
    cli.add_command(cache)
