"""The FastAPI app of one endpoint: every route that is not on the hot path, and the OpenAPI document.

``app._Guard`` answers predictions and health checks itself and builds this app on the first
request for anything else (/docs, /openapi.json, /metrics, /tables, /v2/models/{name}), so an
endpoint is ready without importing FastAPI and pydantic. The prediction and health routes are
declared here too: they are what /openapi.json documents, and they call the same handlers.
Request bodies are read and checked by Keel, not FastAPI's validation, whose errors echo the input.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.errors import BadInput, ModelFailed, RequestTooLarge
from keel.serve.docs import add_docs_routes
from keel.serve.follow import ModelSlot
from keel.serve.inference import Inference
from keel.serve.metrics import ServeMetrics
from keel.serve.options import ServeOptions

log = logging.getLogger("keel.serve")

_V2_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "string": "BYTES"}


def _error(status: int, field: str | None, message: str, request_id: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    if request_id is not None:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status)


def _openapi_extra(ref: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}}


def build_fastapi(options: ServeOptions, slot: ModelSlot, metrics: ServeMetrics, inference: Inference) -> FastAPI:
    """The FastAPI app behind ``_Guard``; its lifespan is the guard's, so this app has none."""
    from keel.serve.app import health_body, model_failed_message, too_large_message

    app = FastAPI(title=f"keel serve: {options.model_name}", version="1",
                  docs_url=None, redoc_url=None,   # /docs is ours: Swagger UI's assets served locally
                  description=f"Predictions from the artifact {options.artifact!r} of the flow {options.flow}.")

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, exc: BadInput) -> JSONResponse:
        return _error(exc.status, exc.field, exc.message)

    @app.exception_handler(RequestTooLarge)
    async def too_large(request: Request, exc: RequestTooLarge) -> JSONResponse:
        return _error(413, "body", too_large_message(options.max_body))

    @app.exception_handler(ModelFailed)
    async def model_failed(request: Request, exc: ModelFailed) -> JSONResponse:
        rid = request.scope["state"]["request_id"]
        return _error(500, None, model_failed_message(rid), rid)

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
    async def v2_live() -> dict[str, Any]:
        return health_body("/v2/health/live", slot)

    @app.get("/v2/health/ready")
    async def v2_ready() -> dict[str, Any]:
        return health_body("/v2/health/ready", slot)

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
    async def health() -> dict[str, Any]:
        return health_body("/health", slot)

    @app.get("/ready")
    async def ready() -> dict[str, Any]:
        return health_body("/ready", slot)

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
    return app


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
