"""The HTTP app of one endpoint: Keel's /predict, MLflow's /invocations, Open Inference V2, tables.

Request bodies are read and checked here (not by FastAPI's validation, whose errors echo the
input), so every bad request is a 4xx naming the field and never the value. A model that
raises on a valid request is a 500 with a request id; the traceback goes to the server log.
``_Guard`` (plain ASGI, in front of every route) gives each request its id, checks the token,
caps the body size and records metrics.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import logging
import time
import itertools
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, MutableMapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.errors import BadInput, ModelFailed, RequestTooLarge
from keel.serve.batching import MicroBatcher
from keel.serve.docs import add_docs_routes
from keel.serve.follow import ModelSlot
from keel.serve.metrics import ServeMetrics
from keel.serve.inference import Inference, Scope, dumps
from keel.serve.model import LoadedModel
from keel.serve.options import ServeOptions

log = logging.getLogger("keel.serve")

HEALTH_PATHS = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})
_ROUTE_LABELS = ("/predict", "/invocations", "/health", "/ready", "/metrics", "/v2/health", "/v2/models", "/tables")


def _error(status: int, field: str | None, message: str, request_id: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    if request_id is not None:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status)


def _label(path: str) -> str:
    for prefix in _ROUTE_LABELS:
        if path.startswith(prefix):
            return path if prefix == "/v2/health" and path in HEALTH_PATHS else prefix
    return "other"


class _Guard:
    """Request id, bearer token, body size limit and metrics, before any route runs."""

    def __init__(self, app: Any, options: ServeOptions, metrics: ServeMetrics, inference: Inference):
        self.app, self.options, self.metrics, self.inference = app, options, metrics, inference
        self._auth = f"Bearer {options.token}".encode() if options.token else None
        # request ids: 8 random hex digits per process, then a counter (uuid4 costs a syscall)
        self._id_prefix, self._ids = os.urandom(4).hex(), itertools.count(1)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = f"{self._id_prefix}{next(self._ids):08x}"
        state = scope.setdefault("state", {})
        state["request_id"], state["started"] = request_id, started
        status = [500]

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        path = scope["path"]
        self.metrics.enter()
        try:
            refusal = self._refuse(scope, path)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
                return
            handler = self.inference.handler(scope["method"], path)
            if handler is not None:            # a prediction: answered here, not through FastAPI
                status[0] = await self._predict(handler, scope, receive, send, request_id)
                return
            limit, seen = self.options.max_body, [0]

            async def capped_receive() -> dict[str, Any]:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > limit:
                        raise RequestTooLarge(limit)
                return message

            await self.app(scope, capped_receive, send_with_id)
        finally:
            self.metrics.leave()
            self.metrics.request(_label(path), status[0], time.perf_counter() - started)

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

    def _refuse(self, scope: dict[str, Any], path: str) -> Response | None:
        headers = dict(scope["headers"])
        if self._auth is not None and path not in HEALTH_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self._auth):
                return _error(401, "Authorization", "this endpoint needs the header 'Authorization: Bearer TOKEN' "
                                                    "with the token it was started with")
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.options.max_body
            except ValueError:
                return _error(400, "Content-Length", "the Content-Length header is not a number")
            if too_big:
                return _too_large(self.options.max_body)
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


def _too_large_message(limit: int) -> str:
    return (f"the request body is over the limit of {limit} bytes; send fewer rows per request "
            f"(or start the server with a larger --max-body)")


def _too_large_body(limit: int) -> bytes:
    return _error_body("body", _too_large_message(limit))


def _too_large(limit: int) -> JSONResponse:
    return _error(413, "body", _too_large_message(limit))


def _model_failed_message(request_id: str) -> str:
    return (f"the model failed on this request; the server log has the traceback under "
            f"request id {request_id}")


def _model_failed_body(request_id: str) -> bytes:
    return _error_body(None, _model_failed_message(request_id), request_id)


# -- the app ------------------------------------------------------------------------------------

def _openapi_extra(ref: str, example_key: str = "instances") -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}}


def build_app(options: ServeOptions, slot: ModelSlot) -> "_Guard":
    """The ASGI app serving ``slot``'s model (swapped as it follows newer runs): ``_Guard`` in front
    of the FastAPI app (``.app``), outermost, so a prediction passes through nothing else."""
    metrics = ServeMetrics(options.metrics_dir)
    batcher = (MicroBatcher(options.max_batch_size, options.max_latency_ms / 1000, metrics.batch)
               if options.max_batch_size > 0 else None)
    requests_log = None
    if options.log_requests:
        from keel.serve.requestlog import RequestLog

        requests_log = RequestLog(options.request_table, flush_seconds=options.log_flush_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if batcher is not None:
            batcher.start()
        slot.follow()
        if requests_log is not None:
            requests_log.start()
        yield
        slot.stop()
        if requests_log is not None:
            await asyncio.to_thread(requests_log.stop)
        if batcher is not None:
            await batcher.stop()

    app = FastAPI(title=f"keel serve: {options.model_name}", version="1", lifespan=lifespan,
                  docs_url=None, redoc_url=None,   # /docs is ours: Swagger UI's assets served locally
                  description=f"Predictions from the artifact {options.artifact!r} of the flow {options.flow}.")

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, exc: BadInput) -> JSONResponse:
        return _error(exc.status, exc.field, exc.message)

    @app.exception_handler(RequestTooLarge)
    async def too_large(request: Request, exc: RequestTooLarge) -> JSONResponse:
        return _too_large(options.max_body)

    @app.exception_handler(ModelFailed)
    async def model_failed(request: Request, exc: ModelFailed) -> JSONResponse:
        rid = request.scope["state"]["request_id"]
        return _error(500, None, _model_failed_message(rid), rid)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return _error(422, field, f"{field}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"there is no route {request.url.path[:200]}; see /docs for the routes",
                   405: f"{request.method} is not allowed on this route; see /docs"}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, None, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request.scope.get("state", {}).get("request_id", "?")
        log.error("keel serve: request %s failed", rid, exc_info=exc)
        return _error(500, None, f"the server failed on this request; the server log has the traceback under "
                                 f"request id {rid}", rid)

    # The prediction routes: _Guard answers them through ``inference`` before FastAPI routes;
    # these routes are their OpenAPI entries and call the same handlers.
    inference = Inference(options, slot, metrics, batcher, requests_log)

    async def _answer(handler: Any, request: Request) -> Response:
        return Response(await handler(request.scope, await request.body()), media_type="application/json")

    @app.post("/predict", openapi_extra=_openapi_extra("#/components/schemas/PredictRequest"),
              summary="Predictions for rows: {\"instances\": [...]}")
    async def predict_route(request: Request) -> Response:
        return await _answer(inference.predict, request)

    @app.post("/invocations", openapi_extra=_openapi_extra("#/components/schemas/InvocationsRequest"),
              summary="MLflow scoring: dataframe_split, dataframe_records, instances, inputs, or text/csv")
    async def invocations(request: Request) -> Response:
        return await _answer(inference.invocations, request)

    @app.post("/v2/models/{name}/infer", openapi_extra=_openapi_extra("#/components/schemas/InferRequest"))
    async def v2_infer(name: str, request: Request) -> Response:
        return await _answer(inference.infer, request)

    # Open Inference Protocol (KServe V2) -----------------------------------------------------
    known = inference.known

    @app.get("/v2/health/live")
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def v2_ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v2/models/{name}")
    async def v2_metadata(name: str) -> dict[str, Any]:
        model = known(name)
        sig = model.signature
        inputs = ([{"name": n, "datatype": _V2_TYPES[t], "shape": [-1]} for n, t in zip(sig.names, sig.types)]
                  if sig.names else [{"name": "input-0", "datatype": "FP64", "shape": [-1, sig.width or -1]}])
        return {"name": name, "versions": [str(model.run_id)], "platform": "keel", "inputs": inputs,
                "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}], "parameters": model.origin()}

    @app.get("/v2/models/{name}/ready")
    async def v2_model_ready(name: str) -> dict[str, Any]:
        known(name)
        return {"name": name, "ready": True}

    # health, metrics ---------------------------------------------------------------------------
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> dict[str, Any]:
        return {"status": "ready", **slot.current.origin()}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_page() -> PlainTextResponse:
        def model_labels() -> dict[str, str]:
            m = slot.current
            return {"flow": m.flow, "run": m.run, "artifact": m.artifact, "key": m.key}

        return PlainTextResponse(metrics.render(model_labels), media_type="text/plain; version=0.0.4")

    from keel.serve.tables import add_table_routes

    add_table_routes(app)
    add_docs_routes(app, f"keel serve: {options.model_name}")
    _typed_openapi(app, slot)
    return _Guard(app, options=options, metrics=metrics, inference=inference)


_V2_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


def _typed_openapi(app: FastAPI, slot: ModelSlot) -> None:
    """/openapi.json with the served model's row schema (rebuilt when a swap changes it)."""
    base = app.openapi
    cache: dict[Any, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        sig = slot.current.signature
        if sig not in cache:
            app.openapi_schema = None
            doc = copy.deepcopy(base())
            row = sig.row_schema()
            rows = {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}, "minItems": 1}
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas["Instance"] = row
            schemas["PredictRequest"] = {"type": "object", "properties": {"instances": rows},
                                         "required": ["instances"]}
            schemas["InvocationsRequest"] = {"type": "object", "properties": {"instances": rows},
                                             "required": ["instances"],
                                             "description": "also dataframe_split, dataframe_records or inputs, "
                                                            "as MLflow's scoring server takes them"}
            width = len(sig.names) or sig.width or 1
            schemas["InferRequest"] = {
                "type": "object", "required": ["inputs"],
                "properties": {"id": {"type": "string"}, "inputs": {
                    "type": "array", "minItems": 1, "maxItems": 1, "items": {
                        "type": "object", "required": ["name", "shape", "datatype", "data"],
                        "properties": {"name": {"type": "string"}, "datatype": {"type": "string", "enum": ["FP64"]},
                                       "shape": {"type": "array", "items": {"type": "integer", "minimum": 1},
                                                 "minItems": 2, "maxItems": 2},
                                       "data": {"type": "array", "items": {"type": "number"}}}}}},
                "description": f"one tensor of shape [rows, {width}]"}
            cache.clear()
            cache[sig] = doc
        return cache[sig]

    app.openapi = openapi  # type: ignore[method-assign]
