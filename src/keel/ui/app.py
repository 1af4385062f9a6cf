"""The dashboard's web server: a Starlette app serving the JSON API under ``/api`` and the
static front end (``keel/ui/static``, plain ES modules, no build step).

Every read and write goes through :class:`keel.ui.data.DashboardData`. Errors become JSON
``{"error": message}`` with a 4xx status; a bad ``where`` adds ``column`` (1-based).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
from pathlib import Path
from typing import Any

from keel.errors import KeelError, QueryError, UsageError
from keel.ui.data import DashboardData, NotFound, parse_pathspec

STATIC = Path(__file__).resolve().parent / "static"
LIVE_POLL_SECONDS = 0.3


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)


def _dumps(value: Any) -> str:
    # NaN and infinities are not JSON: data.py turns them into strings before they get here.
    from keel.tracking.jsonsafe import finite

    return json.dumps(finite(value), default=_json_default)


def create_app(data: DashboardData | None = None, token: str | None = None) -> Any:
    """The ASGI app over ``data`` (the store of ``KEEL_HOME`` by default). With ``token``,
    every request needs ``Authorization: Bearer TOKEN``, a ``keel_token`` cookie, or
    ``?token=TOKEN`` once (which sets the cookie, so the browser's own requests carry it)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    data = data or DashboardData()

    class _JSON(JSONResponse):
        def render(self, content: Any) -> bytes:
            return _dumps(content).encode()

    def _error(exc: Exception) -> Response:
        if isinstance(exc, NotFound):
            return _JSON({"error": str(exc)}, status_code=404)
        if isinstance(exc, QueryError):
            message = str(exc).splitlines()[0]
            return _JSON({"error": message, "column": exc.column, "query": exc.query}, status_code=400)
        if isinstance(exc, (UsageError, ValueError)):
            return _JSON({"error": str(exc)}, status_code=400)
        return _JSON({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)

    async def call(fn: Any, *args: Any, **kwargs: Any) -> Response:
        try:
            return _JSON(await run_in_threadpool(fn, *args, **kwargs))
        except (KeelError, ValueError) as exc:
            return _error(exc)

    def _int(request: Request, name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"{name} must be a whole number, not {raw!r}") from None
        if not -(2**63) <= value < 2**63:
            raise UsageError(f"{name} is out of range: it must fit in 64 bits, not {raw!r}")
        return value

    def _float(request: Request, name: str) -> float | None:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return float(raw)
        except ValueError:
            raise UsageError(f"{name} must be a number, not {raw!r}") from None

    def _run_key(request: Request) -> tuple[str, int]:
        return parse_pathspec(f"{request.path_params['flow']}/{request.path_params['run_id']}")

    async def index(request: Request) -> Response:
        response = FileResponse(STATIC / "index.html")
        if token and request.query_params.get("token") == token:
            response.set_cookie("keel_token", token, httponly=True, samesite="strict")
        return response

    async def runs(request: Request) -> Response:
        q = request.query_params
        try:
            metrics = [m for m in q["metrics"].split(",") if m] if "metrics" in q else None

            def page() -> dict[str, Any]:
                p = data.runs(where=q.get("where") or None, sort=q.get("sort") or None, limit=_int(request, "limit", 50),
                              offset=_int(request, "offset", 0), flow=q.get("flow") or None, metrics=metrics)
                return {"rows": p.rows, "total": p.total, "offset": p.offset, "limit": p.limit,
                        "param_names": p.param_names, "metric_names": p.metric_names}
            return await call(page)
        except KeelError as exc:
            return _error(exc)

    async def run(request: Request) -> Response:
        try:
            return await call(data.run, *_run_key(request))
        except KeelError as exc:
            return _error(exc)

    async def code(request: Request) -> Response:
        try:
            return await call(data.code, *_run_key(request))
        except KeelError as exc:
            return _error(exc)

    async def artifacts(request: Request) -> Response:
        try:
            return await call(data.artifacts, *_run_key(request), int(request.path_params["task_id"]))
        except KeelError as exc:
            return _error(exc)

    async def metric(request: Request) -> Response:
        try:
            flow, run_id = _run_key(request)
            task = _int(request, "task", 0) or None
            return await call(data.metric_series, flow, run_id, request.path_params["name"],
                              max(1, min(_int(request, "buckets", 400), 5000)), _float(request, "lo"),
                              _float(request, "hi"), task)
        except KeelError as exc:
            return _error(exc)

    async def log(request: Request) -> Response:
        try:
            flow, run_id = _run_key(request)
            return await call(data.log, flow, run_id, int(request.path_params["task_id"]),
                              request.query_params.get("stream", "stdout"), _int(request, "offset", 0))
        except KeelError as exc:
            return _error(exc)

    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise UsageError("the request body must be JSON") from None
        if not isinstance(body, dict):
            raise UsageError("the request body must be a JSON object")
        return body

    async def tags(request: Request) -> Response:
        try:
            flow, run_id = _run_key(request)
            body = await _body(request)
            add, remove = body.get("add") or [], body.get("remove") or []
            if not isinstance(add, list) or not isinstance(remove, list):
                raise UsageError("'add' and 'remove' must be lists of tags")

            def change() -> dict[str, Any]:
                result = data.remove_tags(flow, run_id, [str(t) for t in remove]) if remove else None
                if add:
                    result = data.add_tags(flow, run_id, [str(t) for t in add])
                return {"tags": result if result is not None else data.run(flow, run_id)["tags"]}
            return await call(change)
        except KeelError as exc:
            return _error(exc)

    async def comments(request: Request) -> Response:
        try:
            flow, run_id = _run_key(request)
            body = await _body(request)
            return await call(data.add_comment, flow, run_id, str(body.get("text") or ""))
        except KeelError as exc:
            return _error(exc)

    async def compare(request: Request) -> Response:
        specs = [s for s in request.query_params.get("runs", "").split(",") if s.strip()]
        return await call(data.compare, specs, series=request.query_params.get("series") != "0")

    async def series(request: Request) -> Response:
        try:
            specs = [s for s in request.query_params.get("runs", "").split(",") if s.strip()]
            name = request.query_params.get("name") or ""
            if not name:
                raise UsageError("name the metric: /api/series?runs=Train/1,Train/2&name=loss")
            return await call(data.series_of_runs, specs, name, max(1, min(_int(request, "buckets", 300), 5000)),
                              _float(request, "lo"), _float(request, "hi"))
        except KeelError as exc:
            return _error(exc)

    async def schedules(request: Request) -> Response:
        return await call(data.schedules)

    async def tables(request: Request) -> Response:
        return await call(data.tables)

    async def table(request: Request) -> Response:
        try:
            version = _int(request, "version", 0) or None
            return await call(data.table, request.path_params["name"], version, _int(request, "limit", 20))
        except KeelError as exc:
            return _error(exc)

    async def table_sql(request: Request) -> Response:
        try:
            body = await _body(request)
            limit = body.get("limit", 1000)
            if not isinstance(limit, int) or isinstance(limit, bool):
                raise UsageError("limit must be a whole number of rows")
            return await call(data.table_sql, str(body.get("query") or ""), limit)
        except KeelError as exc:
            return _error(exc)

    async def queues(request: Request) -> Response:
        return await call(data.queues)

    async def endpoints(request: Request) -> Response:
        return await call(data.endpoints)

    async def events(request: Request) -> Response:
        """Server-sent events: ``change`` with the kinds that moved, polled every 0.3 s only while
        this client stays connected."""
        target = None
        if request.query_params.get("run"):
            try:
                target = parse_pathspec(request.query_params["run"])
            except KeelError as exc:
                return _error(exc)

        async def stream() -> Any:
            cursor = request.query_params.get("cursor") or None
            first = await run_in_threadpool(data.changes_since, cursor, target)
            cursor = first.cursor
            yield f"event: hello\ndata: {json.dumps({'cursor': cursor})}\n\n"
            idle = 0.0
            while not await request.is_disconnected():
                await asyncio.sleep(LIVE_POLL_SECONDS)
                change = await run_in_threadpool(data.changes_since, cursor, target)
                cursor = change.cursor
                if change.kinds:
                    idle = 0.0
                    yield f"event: change\ndata: {json.dumps({'cursor': cursor, 'kinds': list(change.kinds)})}\n\n"
                else:
                    idle += LIVE_POLL_SECONDS
                    if idle >= 15:   # a comment keeps proxies from closing an idle stream
                        idle = 0.0
                        yield ": idle\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def not_found(request: Request) -> Response:
        return _JSON({"error": f"no API route {request.url.path}"}, status_code=404)

    routes = [
        Route("/", index),
        Route("/api/runs", runs),
        Route("/api/runs/{flow}/{run_id}", run),
        Route("/api/runs/{flow}/{run_id}/code", code),
        Route("/api/runs/{flow}/{run_id}/tasks/{task_id:int}/artifacts", artifacts),
        Route("/api/runs/{flow}/{run_id}/tasks/{task_id:int}/log", log),
        Route("/api/runs/{flow}/{run_id}/metrics/{name:path}", metric),
        Route("/api/runs/{flow}/{run_id}/tags", tags, methods=["POST"]),
        Route("/api/runs/{flow}/{run_id}/comments", comments, methods=["POST"]),
        Route("/api/compare", compare),
        Route("/api/series", series),
        Route("/api/schedules", schedules),
        Route("/api/tables", tables),
        Route("/api/tables/{name}", table),
        Route("/api/sql", table_sql, methods=["POST"]),
        Route("/api/queues", queues),
        Route("/api/endpoints", endpoints),
        Route("/api/events", events),
        Route("/api/{rest:path}", not_found),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)

    if token:
        from starlette.middleware.base import BaseHTTPMiddleware

        async def check_token(request: Request, call_next: Any) -> Response:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() \
                or request.cookies.get("keel_token", "") or request.query_params.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _JSON({"error": "this dashboard needs its token: open it with ?token=TOKEN, or send "
                                       "'Authorization: Bearer TOKEN'"}, status_code=401)
            return await call_next(request)

        app.add_middleware(BaseHTTPMiddleware, dispatch=check_token)
    return app


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          project_file: str | None = None) -> None:
    """Run the dashboard until interrupted. Any address but loopback needs a token."""
    if not _is_loopback(host) and not token:
        raise UsageError(f"keel ui would listen on {host}, reachable from other machines, without a token: "
                         f"add --token SECRET (then open http://{host}:{port}/?token=SECRET), or use --host 127.0.0.1")
    import uvicorn

    app = create_app(DashboardData(project_file=project_file), token=token)
    print(f"Keel dashboard on http://{host}:{port}/" + ("?token=…" if token else ""), flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
