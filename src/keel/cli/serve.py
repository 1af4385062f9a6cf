"""Serving commands: ``keel serve FLOW[/RUN] --artifact model`` and ``keel project serve``.

    keel serve Train --artifact model [--host 127.0.0.1] [--port 8000] [--token T]
    keel project serve [-f keel.yaml] [--endpoint NAME]...
"""

from __future__ import annotations

import os
import re
from typing import Any

import click

from keel.settings import Settings

_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)
_UNIT = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def parse_bytes(text: str) -> int:
    """``10MB`` -> 10485760; a bare number is bytes."""
    from keel.errors import UsageError, clip

    match = _BYTES.match(text)
    if not match:
        raise UsageError(f"--max-body {clip(text)} is not a size; write e.g. 10MB, 512KB or 1048576")
    return int(float(match.group(1)) * _UNIT[match.group(2).upper()])


def parse_target(target: str) -> tuple[str, int | None]:
    from keel.errors import UsageError, clip

    flow, _, run = target.partition("/")
    from keel.ids import parse_id

    if not flow or (run and not (run.isascii() and run.isdigit())) or "/" in run:
        raise UsageError(f"malformed target {clip(target)}: give FLOW (follow its latest successful run) or "
                         f"FLOW/RUN, e.g. Train or Train/3")
    return flow, parse_id(run, "run id", target) if run else None


@click.command()
@click.argument("target")
@click.option("--artifact", default="model", show_default=True, help="the artifact to serve (a predict()-able object)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind; not loopback needs --token")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", default=None, envvar="KEEL_SERVE_TOKEN", help="require 'Authorization: Bearer TOKEN'")
@click.option("--max-body", default="10MB", show_default=True, help="largest request body")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="server processes")
@click.option("--max-concurrency", default=256, show_default=True, type=click.IntRange(min=1),
              help="connections and requests at once; past it: 503")
@click.option("--max-batch-size", default=0, show_default=True, type=click.IntRange(min=0),
              help="micro-batch up to this many rows per model call (0: off)")
@click.option("--max-latency-ms", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="with --max-batch-size: longest wait for a batch to fill")
@click.option("--preprocess", default=None, metavar="ARTIFACT", help="a fitted transformer applied before the model")
@click.option("--name", default=None, help="the model's name in /v2/models/{name} (default: the flow's)")
@click.option("--log-requests", is_flag=True,
              help="append served requests (inputs, predictions, run, time, latency) to a Data Engine table")
@click.option("--log-table", default=None, metavar="NAME", help="the table of --log-requests (default: NAME_requests)")
def serve(target: str, artifact: str, host: str, port: int, token: str | None, max_body: str, workers: int,
          max_concurrency: int, max_batch_size: int, max_latency_ms: float, preprocess: str | None,
          name: str | None, log_requests: bool, log_table: str | None) -> None:
    """Serve a run's model over REST: keel serve FLOW[/RUN] --artifact model."""
    from keel.cli.main import _guard

    def go() -> int:
        from keel.serve import ServeOptions, serve as run_server

        flow, run_id = parse_target(target)
        run_server(ServeOptions(flow=flow, run_id=run_id, artifact=artifact, name=name, host=host, port=port,
                                token=token or None, max_body=parse_bytes(max_body), workers=workers,
                                max_concurrency=max_concurrency, max_batch_size=max_batch_size,
                                max_latency_ms=max_latency_ms, preprocess=preprocess, log_requests=log_requests,
                                log_table=log_table))
        return 0

    _guard(go)


@click.command("serve")
@click.option("-f", "--file", "path", default="keel.yaml", show_default=True, metavar="PATH", help="the project file")
@click.option("--endpoint", "only", multiple=True, metavar="NAME", help="serve only this endpoint (repeatable)")
def project_serve(path: str, only: tuple[str, ...]) -> None:
    """Serve every endpoints: entry of the project file, each on its own port."""
    from keel.cli.main import _guard

    def go() -> int:
        from keel.cli.project import load
        from keel.errors import UsageError
        from keel.serve.project import serve_project

        proj = load(path, flows=False)
        if not proj.endpoints:
            raise UsageError(f"{path} has no endpoints:; add one, e.g.\n"
                             f"  endpoints:\n    - name: churn\n      flow: Train\n      artifact: model")
        unknown = [n for n in only if n not in proj.endpoints]
        if unknown:
            raise UsageError(f"{path} has no endpoint {unknown[0]!r}; its endpoints are: {', '.join(proj.endpoints)}")
        return serve_project(proj, list(only) or list(proj.endpoints), token=Settings.from_env().serve_token)

    _guard(go)


def register(cli: Any) -> None:
    from keel.cli.project import project

    cli.add_command(serve)
    project.add_command(project_serve)
