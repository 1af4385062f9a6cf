"""``/docs``: Swagger UI served by the endpoint itself, so it works with no internet.

FastAPI's default page loads Swagger UI's JavaScript and CSS from a CDN. Here the page names
only local URLs (``/docs/assets/...``), and the assets come from the ``swagger-ui-bundle``
package (a dependency of the ``serve`` extra), read once and kept in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

ASSETS = "/docs/assets"
_TYPES = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
          "favicon-32x32.png": "image/png"}
_cache: dict[str, bytes] = {}


def _asset_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def asset(name: str) -> bytes | None:
    """The bytes of one Swagger UI asset, or None when ``name`` is not one of them."""
    if name not in _TYPES:
        return None
    if name not in _cache:
        _cache[name] = (_asset_dir() / name).read_bytes()
    return _cache[name]


def add_docs_routes(app: FastAPI, title: str) -> None:
    """``GET /docs`` (the page) and ``GET /docs/assets/{name}`` on a FastAPI app made with docs_url=None."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} - docs",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        body = asset(name)
        if body is None:
            return JSONResponse({"error": f"there is no docs asset {name[:100]!r}", "field": "name"},
                                status_code=404)
        return Response(body, media_type=_TYPES[name], headers={"Cache-Control": "public, max-age=86400"})
