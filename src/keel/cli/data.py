"""Data Engine commands: ``keel data list|show|history|sql``.

    keel data list
    keel data show weather [--version 3] [--limit 20]
    keel data history weather
    keel data sql "SELECT city, avg(temp) FROM weather GROUP BY 1"
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import click

from keel.cli.types import COUNT, VERSION


def _engine() -> Any:
    from keel.data.engine import DataEngine

    return DataEngine.from_env()


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _print_frame(frame: Any, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", title=title, title_justify="left")
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.itertuples(index=False):
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(soft_wrap=True).print(table)


def _guard(fn: Any) -> None:
    from keel.cli.main import _guard as guard

    guard(fn)


@click.group()
def data() -> None:
    """Data Engine tables: versioned Parquet, queried with DuckDB."""


@data.command("list")
def list_tables() -> None:
    """Every table with its latest version, rows, size and writer."""

    def go() -> int:
        from rich.console import Console
        from rich.table import Table

        tables = _engine().list()
        if not tables:
            click.echo("No tables yet. Save one from a step with current.data.save(NAME, df).")
            return 0
        out = Table(box=None, header_style="bold")
        for col in ("table", "version", "versions", "rows", "size", "saved", "by"):
            out.add_column(col)
        for t in tables:
            v = t.latest
            out.add_row(t.name, str(v.version), str(t.versions), f"{v.rows:,}", _size(v.bytes), _when(v.created_at),
                        v.lineage or v.user or "")
        Console(soft_wrap=True).print(out)
        return 0

    _guard(go)


@data.command()
@click.argument("name")
@click.option("--version", "version", type=VERSION, default=None, help="a version number (default: the latest)")
@click.option("--limit", type=COUNT, default=20, show_default=True, help="rows to show")
def show(name: str, version: int | None, limit: int) -> None:
    """A table's schema, lineage and first rows."""

    def go() -> int:
        from keel.data.engine import parse_source

        engine = _engine()
        base, pinned = parse_source(name)
        v = engine.version(base, version if version is not None else pinned)
        click.echo(f"{v.name}@{v.version}: {v.rows:,} rows, {_size(v.bytes)}, {len(v.files)} file(s), "
                   f"saved {_when(v.created_at)} by {v.lineage or v.user or 'unknown'}"
                   + (f" (append to @{v.parent})" if v.parent else ""))
        fields = json.loads(v.schema)["fields"]
        click.echo("columns: " + ", ".join(f"{f['name']} {f['type']}" for f in fields))
        frame = engine.sql(f"SELECT * FROM {v.name}@{v.version} LIMIT {max(0, limit)}")
        _print_frame(frame)
        return 0

    _guard(go)


@data.command()
@click.argument("name")
def history(name: str) -> None:
    """Every version of a table, oldest first."""

    def go() -> int:
        from rich.console import Console
        from rich.table import Table

        out = Table(box=None, header_style="bold")
        for col in ("version", "mode", "rows", "size", "files", "saved", "by"):
            out.add_column(col)
        for v in _engine().history(name):
            out.add_row(str(v.version), v.mode if not v.parent else f"append to @{v.parent}", f"{v.rows:,}",
                        _size(v.bytes), str(len(v.files)), _when(v.created_at), v.lineage or v.user or "")
        Console(soft_wrap=True).print(out)
        return 0

    _guard(go)


@data.command()
@click.argument("query")
@click.option("--limit", type=COUNT, default=100, show_default=True, help="rows to show at most")
def sql(query: str, limit: int) -> None:
    """Run DuckDB SQL over the tables (latest versions; NAME@N for an older one)."""

    def go() -> int:
        frame = _engine().sql(query)
        _print_frame(frame.head(limit))
        if len(frame) > limit:
            click.echo(f"({len(frame) - limit} more rows; raise --limit to see them)")
        return 0

    _guard(go)


def register(cli: click.Group) -> None:
    cli.add_command(data)
