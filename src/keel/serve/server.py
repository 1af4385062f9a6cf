"""Starting an endpoint: check it is safe, load the model, run uvicorn (one process or N workers).

``serve(options)`` is the one entry point; ``keel serve`` and ``keel project serve`` call it.
uvicorn finishes in-flight requests on SIGTERM (graceful shutdown) and answers 503 past
``max_concurrency`` requests at once.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
from dataclasses import replace
from typing import Any, Callable

from keel.errors import UsageError
from keel.serve.follow import ModelSlot
from keel.serve.model import LoadedModel, load_model
from keel.serve.options import ServeOptions

_OPTIONS_ENV = "KEEL_SERVE_OPTIONS"
_GRACE_SECONDS = 30


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: ServeOptions) -> None:
    """Refuse what is unsafe or impossible before loading anything; every message says the fix."""
    if not is_loopback(options.host) and not options.token:
        raise UsageError(f"refusing to serve on {options.host} without a token: anyone who can reach it could "
                         f"call the model. Pass --token TOKEN (or set KEEL_SERVE_TOKEN), or bind 127.0.0.1")
    if options.log_requests:
        from keel.serve.tables import data_engine_available

        if not data_engine_available():
            raise UsageError("--log-requests writes requests to a Data Engine table, which needs pyarrow and "
                             "duckdb; install Keel with the data extra (pip install keel[data]) or drop "
                             "--log-requests")
        from keel.data.engine import check_name

        check_name(options.request_table)
    elif options.log_table is not None:
        raise UsageError("--log-table names the table of --log-requests; add --log-requests or drop --log-table")
    if options.max_batch_size < 0 or options.max_latency_ms < 0:
        raise UsageError("--max-batch-size and --max-latency-ms must be 0 or more")


def _loader(options: ServeOptions) -> Callable[[int], LoadedModel]:
    def load(run_id: int) -> LoadedModel:
        return load_model(options.flow, run_id, options.artifact, options.preprocess)
    return load


def make_slot(options: ServeOptions, model: LoadedModel) -> ModelSlot:
    follow = _loader(options) if options.run_id is None else None
    return ModelSlot(model, follow, interval=options.poll_seconds)


def worker_app() -> Any:  # uvicorn's factory for --workers N: each worker process loads its own model
    from keel.serve.app import build_app

    options = ServeOptions.from_json(os.environ[_OPTIONS_ENV])
    _log_setup()
    model = load_model(options.flow, options.run_id, options.artifact, options.preprocess)
    return build_app(options, make_slot(options, model))


def _log_setup() -> None:
    logger = logging.getLogger("keel.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve(options: ServeOptions) -> None:
    """Serve until SIGTERM or Ctrl-C. Raises UsageError/NotFoundError before binding when it cannot."""
    import uvicorn

    check_options(options)
    _log_setup()
    model = load_model(options.flow, options.run_id, options.artifact, options.preprocess)
    follows = "following its latest successful run" if options.run_id is None else "pinned"
    print(f"keel serve: {model.run} artifact {model.artifact} ({model.key[:12]}), {follows}, "
          f"at http://{options.host}:{options.port} (docs: /docs)", file=sys.stderr, flush=True)
    common: dict[str, Any] = dict(host=options.host, port=options.port, limit_concurrency=options.max_concurrency,
                  timeout_graceful_shutdown=_GRACE_SECONDS, access_log=False, log_level="warning",
                  server_header=False, proxy_headers=False)
    # uvicorn finishes in-flight requests on SIGTERM, then raises the signal again: exit 0 then,
    # since a requested, graceful stop is a success.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if options.workers > 1:
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="keel-serve-metrics-")   # each worker's metrics, summed by /metrics
        try:
            os.environ[_OPTIONS_ENV] = replace(options, metrics_dir=folder).to_json()
            uvicorn.run("keel.serve.server:worker_app", factory=True, workers=options.workers, **common)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    from keel.serve.app import build_app

    uvicorn.run(build_app(options, make_slot(options, model)), **common)
