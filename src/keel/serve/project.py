"""``keel project serve``: every ``endpoints:`` entry of keel.yaml, each in its own server process.

Each process calls the same ``serve()`` as ``keel serve``. SIGTERM or Ctrl-C here is passed
on to every endpoint, which finishes its in-flight requests; if one endpoint stops on its
own, the others are stopped too and the exit status is non-zero.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from typing import Any

from keel.errors import KeelError, UsageError
from keel.serve.options import ServeOptions


def _run(options: ServeOptions) -> None:
    """One endpoint's process: a Keel error is one line on stderr and exit 2 (usage) or 1."""
    from keel.serve.server import serve

    try:
        serve(options)
        code = 0
    except KeelError as exc:
        print(f"keel: {exc}", file=sys.stderr, flush=True)
        code = 2 if isinstance(exc, UsageError) else 1
    sys.exit(code)


def endpoint_options(project: Any, name: str, token: str | None) -> ServeOptions:
    endpoint = project.endpoints[name]
    return ServeOptions(flow=endpoint.flow, artifact=endpoint.artifact, run_id=endpoint.run, name=endpoint.name,
                        host=endpoint.host, port=project.endpoint_port(name), token=token,
                        preprocess=endpoint.preprocess)


def serve_project(project: Any, names: list[str], token: str | None = None) -> int:
    """Serve the named endpoints until SIGTERM/Ctrl-C; the exit status for the CLI."""
    from keel.serve.server import check_options

    options = [endpoint_options(project, n, token) for n in names]
    for o in options:
        check_options(o)                       # refuse before starting any
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_run, args=(o,), name=f"keel-serve-{o.model_name}") for o in options]
    stopping = []

    def stop(signum: int, frame: Any) -> None:
        stopping.append(signum)
        for p in procs:
            if p.is_alive() and p.pid is not None:
                p.terminate()                  # SIGTERM: uvicorn finishes in-flight requests

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for p in procs:
            p.start()
        while not stopping and all(p.is_alive() for p in procs):
            time.sleep(0.2)                    # waiting on child processes; signals interrupt it
        if not stopping:
            stop(signal.SIGTERM, None)
        for p in procs:
            p.join()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    failed = [p.name for p in procs if p.exitcode not in (0, -signal.SIGTERM)]
    if failed and not stopping:
        print(f"keel project serve: {', '.join(failed)} stopped; stopped the others too", file=sys.stderr)
        return 1
    return 0
