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
import csv
import hmac
import io
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, MutableMapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.errors import BadInput, ModelFailed, RequestTooLarge
from keel.serve.batching import MicroBatcher
from keel.serve.follow import ModelSlot
from keel.serve.metrics import ServeMetrics
from keel.serve.model import LoadedModel, rows_to_input
from keel.serve.options import ServeOptions

log = logging.getLogger("keel.serve")

HEALTH_PATHS = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready"})
_ROUTE_LABELS = ("/predict", "/invocations", "/health", "/ready", "/metrics", "/v2/health", "/v2/models", "/tables")
_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


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
            return path if prefix == "/v2/health" else prefix
    return "other"


class _Guard:
    """Request id, bearer token, body size limit and metrics, before any route runs."""

    def __init__(self, app: Any, options: ServeOptions, metrics: ServeMetrics):
        self.app, self.options, self.metrics = app, options, metrics
        self._auth = f"Bearer {options.token}".encode() if options.token else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"], state["started"] = request_id, started
        status = [500]

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        path = scope["path"]
        self.metrics.in_flight += 1
        try:
            refusal = self._refuse(scope, path)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
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
            self.metrics.in_flight -= 1
            self.metrics.request(_label(path), status[0], time.perf_counter() - started)

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


def _too_large(limit: int) -> JSONResponse:
    return _error(413, "body", f"the request body is over the limit of {limit} bytes; send fewer rows per request "
                               f"(or start the server with a larger --max-body)")


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body:
        raise BadInput("body", "the request has no body; send a JSON object", 400)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadInput("body", "the request body is not valid JSON", 400) from None


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadInput("body", f"the request body must be a JSON object {what}")
    return body


# -- the three request shapes -> rows -----------------------------------------------------------

def _mlflow_rows(body: Any) -> tuple[Any, str]:
    body = _object(body, "with one of: " + ", ".join(_MLFLOW_KEYS))
    given = [k for k in _MLFLOW_KEYS if k in body]
    if len(given) != 1:
        raise BadInput("body", "the body must have exactly one of the keys " + ", ".join(_MLFLOW_KEYS))
    key = given[0]
    value = body[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise BadInput("dataframe_split.data", "dataframe_split must be an object with 'columns' and 'data' "
                                                   "(a list of rows)")
        columns = value.get("columns")
        if columns is None:
            return value["data"], "dataframe_split.data"
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise BadInput("dataframe_split.columns", "dataframe_split.columns must be a list of column names")
        rows = []
        for i, row in enumerate(value["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise BadInput(f"dataframe_split.data[{i}]", f"dataframe_split.data[{i}] must be a list of "
                                                             f"{len(columns)} values, one per column")
            rows.append(dict(zip(columns, row)))
        return rows, "dataframe_split.data"
    if key == "inputs" and isinstance(value, dict):
        columns = list(value)
        if not all(isinstance(v, list) for v in value.values()) or len({len(v) for v in value.values()}) > 1:
            raise BadInput("inputs", "inputs as an object must map each feature to a list, all of one length")
        n = len(next(iter(value.values()))) if value else 0
        return [{c: value[c][i] for c in columns} for i in range(n)], "inputs"
    return value, key


def _csv_rows(body: bytes) -> tuple[Any, str]:
    try:
        text = body.decode("utf-8")
        table = list(csv.reader(io.StringIO(text)))
    except (UnicodeDecodeError, csv.Error):
        raise BadInput("body", "the CSV body is not readable UTF-8 CSV", 400) from None
    if len(table) < 2:
        raise BadInput("body", "the CSV body needs a header line and at least one row")
    header, rows = table[0], table[1:]
    out = []
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise BadInput(f"csv line {i + 2}", f"CSV line {i + 2} has {len(row)} values; the header has {len(header)}")
        out.append({h: _csv_value(v) for h, v in zip(header, row)})
    return out, "csv"


def _csv_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _v2_rows(body: Any, model: LoadedModel) -> tuple[Any, str]:
    body = _object(body, "with 'inputs': [{name, shape, datatype, data}]")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise BadInput("inputs", "inputs must be a non-empty list of tensors {name, shape, datatype, data}")
    for i, tensor in enumerate(inputs):
        shape, data = tensor.get("shape"), tensor.get("data")
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and not isinstance(d, bool)
                                                               and d >= 0 for d in shape):
            raise BadInput(f"inputs[{i}].shape", f"inputs[{i}].shape must be a list of sizes, e.g. [2, 4]")
        if not isinstance(data, list):
            raise BadInput(f"inputs[{i}].data", f"inputs[{i}].data must be a list")
    names = model.signature.names
    if len(inputs) == 1 and len(inputs[0]["shape"]) == 2:
        n, width = inputs[0]["shape"]
        data = _flat(inputs[0]["data"], "inputs[0].data")
        if len(data) != n * width:
            raise BadInput("inputs[0].data", f"inputs[0].data has {len(data)} values; its shape asks for {n * width}")
        return [data[r * width:(r + 1) * width] for r in range(n)], "inputs[0].data"
    columns: dict[str, list[Any]] = {}
    for i, tensor in enumerate(inputs):
        name = tensor.get("name")
        if not isinstance(name, str) or (names and name not in names):
            raise BadInput(f"inputs[{i}].name", f"inputs[{i}].name must be a feature name ({', '.join(names)}) "
                                                f"or send one tensor of shape [rows, features]")
        columns[name] = _flat(tensor["data"], f"inputs[{i}].data")
    if len({len(c) for c in columns.values()}) > 1:
        raise BadInput("inputs", "every input tensor must have one value per row (the same length)")
    n = len(next(iter(columns.values())))
    return [{c: columns[c][r] for c in columns} for r in range(n)], "inputs"


def _flat(data: list[Any], where: str) -> list[Any]:
    if data and isinstance(data[0], list):
        out: list[Any] = []
        for row in data:
            if not isinstance(row, list):
                raise BadInput(where, f"{where} mixes nested lists and values")
            out.extend(row)
        return out
    return data


def _v2_datatype(values: list[Any]) -> str:
    if values and all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


# -- the app ------------------------------------------------------------------------------------

def _openapi_extra(ref: str, example_key: str = "instances") -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}}


def build_app(options: ServeOptions, slot: ModelSlot) -> FastAPI:
    """The FastAPI app serving ``slot``'s model (swapped as it follows newer runs)."""
    metrics = ServeMetrics()
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
                  description=f"Predictions from the artifact {options.artifact!r} of the flow {options.flow}.")

    async def predict(request: Request, rows: Any, where: str) -> tuple[LoadedModel, list[Any]]:
        model = slot.current                      # read once: a swap never splits a request
        x = rows_to_input(rows, model.signature, where)
        try:
            if batcher is not None:
                out = await batcher.predict(model, x)
            else:
                out = await asyncio.to_thread(model.predict, x)
                metrics.batch(len(x))
        except Exception:
            log.exception("keel serve: the model %s raised on request %s", model.run,
                          request.scope["state"]["request_id"])
            raise ModelFailed() from None
        if requests_log is not None:
            _log_request(requests_log, request, model, rows, out)
        return model, out

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, exc: BadInput) -> JSONResponse:
        return _error(exc.status, exc.field, exc.message)

    @app.exception_handler(RequestTooLarge)
    async def too_large(request: Request, exc: RequestTooLarge) -> JSONResponse:
        return _too_large(options.max_body)

    @app.exception_handler(ModelFailed)
    async def model_failed(request: Request, exc: ModelFailed) -> JSONResponse:
        rid = request.scope["state"]["request_id"]
        return _error(500, None, f"the model failed on this request; the server log has the traceback under "
                                 f"request id {rid}", rid)

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

    # Keel's own shape ------------------------------------------------------------------------
    @app.post("/predict", openapi_extra=_openapi_extra("#/components/schemas/PredictRequest"),
              summary="Predictions for rows: {\"instances\": [...]}")
    async def predict_route(request: Request) -> JSONResponse:
        body = _object(await _json_body(request), "with 'instances': a list of rows")
        if "instances" not in body:
            raise BadInput("instances", "the body needs 'instances': a list of rows")
        model, out = await predict(request, body["instances"], "instances")
        return JSONResponse({"predictions": out, **model.origin()})

    # MLflow's shape --------------------------------------------------------------------------
    @app.post("/invocations", openapi_extra=_openapi_extra("#/components/schemas/InvocationsRequest"),
              summary="MLflow scoring: dataframe_split, dataframe_records, instances, inputs, or text/csv")
    async def invocations(request: Request) -> JSONResponse:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() == "text/csv":
            rows, where = _csv_rows(await request.body())
        else:
            rows, where = _mlflow_rows(await _json_body(request))
        model, out = await predict(request, rows, where)
        return JSONResponse({"predictions": out, **model.origin()})

    # Open Inference Protocol (KServe V2) -----------------------------------------------------
    def known(name: str) -> LoadedModel:
        if name != options.model_name:
            raise BadInput("name", f"there is no model {name[:100]!r} here; this endpoint serves "
                                   f"{options.model_name!r}", 404)
        return slot.current

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

    @app.post("/v2/models/{name}/infer", openapi_extra=_openapi_extra("#/components/schemas/InferRequest"))
    async def v2_infer(name: str, request: Request) -> JSONResponse:
        model = known(name)
        body = await _json_body(request)
        rows, where = _v2_rows(body, model)
        model, out = await predict(request, rows, where)
        given_id = body.get("id")
        return JSONResponse({"model_name": name, "model_version": str(model.run_id),
                             "id": given_id if isinstance(given_id, str) else request.scope["state"]["request_id"],
                             "outputs": [{"name": "predict", "datatype": _v2_datatype(out), "shape": [len(out)],
                                          "data": out}],
                             "parameters": model.origin()})

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
    _typed_openapi(app, slot)
    app.add_middleware(_Guard, options=options, metrics=metrics)
    return app


def _log_request(requests_log: Any, request: Request, model: LoadedModel, rows: Any, out: Any) -> None:
    from keel.serve.requestlog import RequestRecord

    state = request.scope["state"]
    requests_log.record(RequestRecord(
        time=time.time(), run=model.run, route=request.url.path, request_id=state["request_id"],
        latency_ms=(time.perf_counter() - state["started"]) * 1000, inputs=rows, predictions=out))


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
