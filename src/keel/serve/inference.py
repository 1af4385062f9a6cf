"""The prediction routes as plain functions of the request's scope and body, answering JSON bytes.

``POST /predict``, ``POST /invocations`` and ``POST /v2/models/{name}/infer`` are the hot
path. ``app._Guard`` (the ASGI layer in front of the FastAPI app) answers them by calling
``Inference.handler(method, path)`` directly, skipping FastAPI's routing, request objects and
dependency solving, which cost more than the model for small requests; the FastAPI routes of
the same paths call the same handlers and are what ``/openapi.json`` documents. A handler
raises ``BadInput`` (a 4xx) or ``ModelFailed`` (a 500 whose traceback is in the log).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

from keel.serve.batching import MicroBatcher, run_model
from keel.serve.follow import ModelSlot
from keel.serve.metrics import ServeMetrics
from keel.errors import BadInput, ModelFailed
from keel.serve.model import LoadedModel, check_rows
from keel.serve.options import ServeOptions
from keel.serve.shapes import csv_rows, json_body, json_object, mlflow_rows, v2_datatype, v2_rows

log = logging.getLogger("keel.serve")

Scope = dict[str, Any]
Handler = Callable[[Scope, bytes], Awaitable[bytes]]
_V2_PREFIX, _V2_SUFFIX = "/v2/models/", "/infer"


def dumps(value: Any) -> bytes:
    """JSON as the responses send it (what Starlette's JSONResponse writes)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


class Inference:
    """One endpoint's prediction routes over ``slot``'s model (batched when ``batcher`` is given)."""

    def __init__(self, options: ServeOptions, slot: ModelSlot, metrics: ServeMetrics,
                 batcher: MicroBatcher | None, requests_log: Any = None):
        self.options, self.slot, self.metrics = options, slot, metrics
        self.batcher, self.requests_log = batcher, requests_log
        self._routes: dict[str, Handler] = {"/predict": self.predict, "/invocations": self.invocations}

    def handler(self, method: str, path: str) -> Handler | None:
        """The handler of a prediction request, or None for every other request."""
        if method != "POST":
            return None
        found = self._routes.get(path)
        if found is None and path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX) \
                and "/" not in path[len(_V2_PREFIX):-len(_V2_SUFFIX)]:
            return self.infer
        return found

    def known(self, name: str) -> LoadedModel:
        if name != self.options.model_name:
            raise BadInput("name", f"there is no model {name[:100]!r} here; this endpoint serves "
                                   f"{self.options.model_name!r}", 404)
        return self.slot.current

    async def run(self, scope: Scope, rows: Any, where: str) -> tuple[LoadedModel, list[Any]]:
        model = self.slot.current                      # read once: a swap never splits a request
        table = check_rows(rows, model.signature, where)
        try:
            if self.batcher is not None:
                out = await self.batcher.predict(model, table)
            else:
                out = await asyncio.to_thread(run_model, model, table)
                self.metrics.batch(len(table))
        except Exception:
            log.exception("keel serve: the model %s raised on request %s", model.run,
                          scope["state"]["request_id"])
            raise ModelFailed() from None
        if self.requests_log is not None:
            self._log(scope, model, rows, out)
        return model, out

    # Keel's own shape ------------------------------------------------------------------------
    async def predict(self, scope: Scope, body: bytes) -> bytes:
        request = json_object(json_body(body), "with 'instances': a list of rows")
        if "instances" not in request:
            raise BadInput("instances", "the body needs 'instances': a list of rows")
        model, out = await self.run(scope, request["instances"], "instances")
        return dumps({"predictions": out, **model.origin()})

    # MLflow's shape --------------------------------------------------------------------------
    async def invocations(self, scope: Scope, body: bytes) -> bytes:
        if _header(scope, b"content-type").split(b";")[0].strip().lower() == b"text/csv":
            rows, where = csv_rows(body)
        else:
            rows, where = mlflow_rows(json_body(body))
        model, out = await self.run(scope, rows, where)
        return dumps({"predictions": out, **model.origin()})

    # Open Inference Protocol (KServe V2) -----------------------------------------------------
    async def infer(self, scope: Scope, body: bytes) -> bytes:
        name = scope["path"][len(_V2_PREFIX):-len(_V2_SUFFIX)]
        model = self.known(name)
        request = json_body(body)
        rows, where = v2_rows(request, model)
        model, out = await self.run(scope, rows, where)
        given_id = request.get("id")
        return dumps({"model_name": name, "model_version": str(model.run_id),
                      "id": given_id if isinstance(given_id, str) else scope["state"]["request_id"],
                      "outputs": [{"name": "predict", "datatype": v2_datatype(out), "shape": [len(out)],
                                   "data": out}],
                      "parameters": model.origin()})

    def _log(self, scope: Scope, model: LoadedModel, rows: Any, out: Any) -> None:
        from keel.serve.requestlog import RequestRecord

        state = scope["state"]
        self.requests_log.record(RequestRecord(
            time=time.time(), run=model.run, route=scope["path"], request_id=state["request_id"],
            latency_ms=(time.perf_counter() - state["started"]) * 1000, inputs=rows, predictions=out))
