"""Click types shared by the commands: numbers that reach the database must fit in 64 bits, so
``--limit 99999999999999999999999`` is a usage error that says so, not a database overflow."""

from __future__ import annotations

import click

INT64_MAX = 2**63 - 1
COUNT = click.IntRange(1, INT64_MAX)      # how many rows or messages to show
VERSION = click.IntRange(1, INT64_MAX)    # a Data Engine table version
PORT = click.IntRange(0, 65535)
