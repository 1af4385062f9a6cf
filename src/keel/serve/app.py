"""The HTTP app of one endpoint: Keel's /predict, MLflow's /invocations, Open Inference V2, tables.

``_Guard`` (plain ASGI, the app uvicorn runs) gives each request its id, checks the token, caps
the body size and records metrics; it runs the lifespan (batcher, follower, request log) and
answers the hot routes itself: predictions (through ``inference.Inference``) and the health
checks. Every other route (/docs, /openapi.json, /metrics, /tables, /v2/models/{name}) is the
FastAPI app of ``routes.py``, built on the first request that needs it: an endpoint is ready
without importing FastAPI and pydantic (about a quarter of a second of CPU).

Request bodies are read and checked by Keel, so every bad request is a 4xx naming the field and
never the value. A model that raises on a valid request is a 500 with a request id; the
traceback goes to the server log.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import time
import itertools
import os
from typing import Any, MutableMapping

from keel.errors import BadInput, ModelFailed, RequestTooLarge
from keel.serve.batching import MicroBatcher
from keel.serve.follow import ModelSlot
from keel.serve.metrics import ServeMetrics
from keel.serve.inference import Inference, Scope, dumps
from keel.serve.options import ServeOptions

log = logging.getLogger("keel.serve")

HEALTH_PATHS = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})
_ROUTE_LABELS = ("/predict", "/invocations", "/health", "/ready", "/metrics", "/v2/health", "/v2/models", "/tables")


def _label(path: str) -> str:
    for prefix in _ROUTE_LABELS:
        if path.startswith(prefix):
            return path if prefix == "/v2/health" and path in HEALTH_PATHS else prefix
    return "other"


def health_body(path: str, slot: ModelSlot) -> dict[str, Any]:
    """The answer of a health route (``HEALTH_PATHS``): the guard sends it, FastAPI documents it."""
    if path == "/health":
        return {"status": "ok"}
    if path == "/ready":
        return {"status": "ready", **slot.current.origin()}
    return {"live": True} if path == "/v2/health/live" else {"ready": True}


class _Guard:
    """Request id, bearer token, body size limit and metrics, before any route runs; the lifespan,
    the prediction and health routes; FastAPI (``.app``) for the rest, built on first use."""

    def __init__(self, options: ServeOptions, slot: ModelSlot, metrics: ServeMetrics, inference: Inference):
        self.options, self.slot, self.metrics, self.inference = options, slot, metrics, inference
        self._app: Any = None
        self._auth = f"Bearer {options.token}".encode() if options.token else None
        # request ids: 8 random hex digits per process, then a counter (uuid4 costs a syscall)
        self._id_prefix, self._ids = os.urandom(4).hex(), itertools.count(1)

    @property
    def app(self) -> Any:
        """The FastAPI app of every route the guard does not answer (imports FastAPI the first time)."""
        if self._app is None:
            from keel.serve.routes import build_fastapi

            self._app = build_fastapi(self.options, self.slot, self.metrics, self.inference)
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            else:
                await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = f"{self._id_prefix}{next(self._ids):08x}"
        state = scope.setdefault("state", {})
        state["request_id"], state["started"] = request_id, started
        status = [500]
        path = scope["path"]
        self.metrics.enter()
        try:
            refusal = self._refuse(scope, path)
            if refusal is not None:
                status[0] = await _send(send, refusal[0], refusal[1], request_id)
                return
            handler = self.inference.handler(scope["method"], path)
            if handler is not None:            # a prediction: answered here, not through FastAPI
                status[0] = await self._predict(handler, scope, receive, send, request_id)
                return
            if path in HEALTH_PATHS and scope["method"] == "GET":
                status[0] = await _send(send, 200, dumps(health_body(path, self.slot)), request_id)
                return
            try:
                app = self.app
            except Exception:                  # e.g. a broken install of the serve extra
                log.exception("keel serve: could not build the routes for request %s", request_id)
                status[0] = await _send(send, 500, _error_body(
                    None, f"the server could not load the route {path[:200]}; predictions and health checks "
                          f"still work. The server log has the traceback under request id {request_id}",
                    request_id), request_id)
                return
            limit, seen = self.options.max_body, [0]

            async def send_with_id(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
                await send(message)

            async def capped_receive() -> dict[str, Any]:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > limit:
                        raise RequestTooLarge(limit)
                return message

            await app(scope, capped_receive, send_with_id)
        finally:
            self.metrics.leave()
            self.metrics.request(_label(path), status[0], time.perf_counter() - started)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        """ASGI lifespan: start the batcher, the run follower and the request log; stop them."""
        batcher, requests_log = self.inference.batcher, self.inference.requests_log
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Everything loaded so far (the model, the libraries) lives as long as the server:
                # keep it out of the garbage collector's full passes, which would otherwise scan it
                # (tens to hundreds of ms with scikit-learn loaded) in the middle of requests.
                gc.freeze()
                if batcher is not None:
                    batcher.start()
                self.slot.follow()
                if requests_log is not None:
                    requests_log.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.slot.stop()
                if requests_log is not None:
                    await asyncio.to_thread(requests_log.stop)
                if batcher is not None:
                    await batcher.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _predict(self, handler: Any, scope: Scope, receive: Any, send: Any, request_id: str) -> int:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return 499                     # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.options.max_body:
                return await _send(send, 413, _too_large_body(self.options.max_body), request_id)
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            status, payload = 200, await handler(scope, chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except BadInput as exc:
            status, payload = exc.status, _error_body(exc.field, exc.message)
        except ModelFailed:
            status, payload = 500, _model_failed_body(request_id)
        except Exception:
            log.exception("keel serve: request %s failed", request_id)
            status, payload = 500, _error_body(None, f"the server failed on this request; the server log has the "
                                                     f"traceback under request id {request_id}", request_id)
        return await _send(send, status, payload, request_id)

    def _refuse(self, scope: dict[str, Any], path: str) -> tuple[int, bytes] | None:
        """(status, body) of a request refused before any route: no token, a body too large."""
        headers = dict(scope["headers"])
        if self._auth is not None and path not in HEALTH_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self._auth):
                return 401, _error_body("Authorization", "this endpoint needs the header 'Authorization: Bearer "
                                                         "TOKEN' with the token it was started with")
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.options.max_body
            except ValueError:
                return 400, _error_body("Content-Length", "the Content-Length header is not a number")
            if too_big:
                return 413, _too_large_body(self.options.max_body)
        return None


async def _send(send: Any, status: int, payload: bytes, request_id: str) -> int:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"x-request-id", request_id.encode())]})
    await send({"type": "http.response.body", "body": payload})
    return status


def _error_body(field: str | None, message: str, request_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    if request_id is not None:
        body["request_id"] = request_id
    return dumps(body)


def too_large_message(limit: int) -> str:
    return (f"the request body is over the limit of {limit} bytes; send fewer rows per request "
            f"(or start the server with a larger --max-body)")


def _too_large_body(limit: int) -> bytes:
    return _error_body("body", too_large_message(limit))


def model_failed_message(request_id: str) -> str:
    return (f"the model failed on this request; the server log has the traceback under "
            f"request id {request_id}")


def _model_failed_body(request_id: str) -> bytes:
    return _error_body(None, model_failed_message(request_id), request_id)


# -- the app ------------------------------------------------------------------------------------

def build_app(options: ServeOptions, slot: ModelSlot) -> _Guard:
    """The ASGI app serving ``slot``'s model (swapped as it follows newer runs): ``_Guard``, which
    answers predictions and health checks and hands the rest to FastAPI (``.app``, built on first use)."""
    metrics = ServeMetrics(options.metrics_dir)
    batcher = (MicroBatcher(options.max_batch_size, options.max_latency_ms / 1000, metrics.batch)
               if options.max_batch_size > 0 else None)
    requests_log = None
    if options.log_requests:
        from keel.serve.requestlog import RequestLog

        requests_log = RequestLog(options.request_table, flush_seconds=options.log_flush_seconds)
    inference = Inference(options, slot, metrics, batcher, requests_log)
    return _Guard(options, slot, metrics, inference)
