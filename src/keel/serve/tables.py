"""Data Engine tables over REST: ``GET /tables/{name}`` (a page) and ``/tables/{name}/rows/{key}``.

The seam to the Data Engine is ``read_table``: the only function here that touches
``keel.data``. Until ``keel.data`` is part of the install, the routes answer 501 with a
message saying so (and stay out of /openapi.json).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from keel.errors import BadInput

_MAX_LIMIT = 10_000


@dataclass(frozen=True)
class TablePage:
    rows: list[dict[str, Any]]
    version: int
    total: int


def data_engine_available() -> bool:
    return importlib.util.find_spec("keel.data") is not None


def read_table(name: str, version: int | None) -> tuple[Any, int]:
    """The table ``name`` at ``version`` (None: latest) as a pyarrow Table, and its version number."""
    import keel.data as data

    try:
        table = data.arrow(name, version=version)
    except LookupError:
        raise BadInput("name", f"there is no table {name[:100]!r}" +
                       (f" at version {version}" if version is not None else "") +
                       "; see: keel data list", 404) from None
    resolved = version
    if resolved is None:
        versions = getattr(data, "latest_version", None)
        resolved = int(versions(name)) if callable(versions) else -1
    return table, resolved


def read_page(name: str, version: int | None, limit: int, offset: int, columns: list[str] | None) -> TablePage:
    table, resolved = read_table(name, version)
    if columns:
        unknown = [c for c in columns if c not in table.column_names]
        if unknown:
            raise BadInput("columns", f"table {name!r} has no column {unknown[0][:100]!r}; its columns are: "
                                      f"{', '.join(table.column_names)}")
        table = table.select(columns)
    return TablePage(rows=table.slice(offset, limit).to_pylist(), version=resolved, total=table.num_rows)


def read_row(name: str, key: str, key_column: str | None, version: int | None) -> dict[str, Any]:
    import pyarrow.compute as pc

    table, _ = read_table(name, version)
    column = key_column or table.column_names[0]
    if column not in table.column_names:
        raise BadInput("key_column", f"table {name!r} has no column {column[:100]!r}; its columns are: "
                                     f"{', '.join(table.column_names)}")
    values = table.column(column)
    try:
        typed: Any = key if values.type == "string" else values.type.to_pandas_dtype()(key)
    except (TypeError, ValueError):
        raise BadInput("key", f"the key is not a valid {values.type} for the column {column!r}") from None
    found = table.filter(pc.equal(values, typed))
    if found.num_rows == 0:
        raise BadInput("key", f"table {name!r} has no row with that {column}", 404)
    return found.slice(0, 1).to_pylist()[0]


def add_table_routes(app: Any) -> None:
    from fastapi import Query
    from fastapi.responses import JSONResponse

    if not data_engine_available():
        @app.get("/tables/{name}", include_in_schema=False)
        @app.get("/tables/{name}/rows/{key}", include_in_schema=False)
        async def no_tables(name: str, key: str = "") -> JSONResponse:
            return JSONResponse({"error": "tables are served from the Data Engine (keel.data), which this "
                                          "installation lacks; install Keel with the data extra"}, status_code=501)
        return

    @app.get("/tables/{name}")
    async def table_page(name: str, version: int | None = Query(None, ge=0),
                         limit: int = Query(100, ge=1, le=_MAX_LIMIT), offset: int = Query(0, ge=0),
                         columns: str | None = Query(None, description="comma-separated column names")
                         ) -> dict[str, Any]:
        import asyncio

        cols = [c for c in columns.split(",") if c] if columns else None
        page = await asyncio.to_thread(read_page, name, version, limit, offset, cols)
        return {"rows": page.rows, "version": page.version, "total": page.total}

    @app.get("/tables/{name}/rows/{key}")
    async def table_row(name: str, key: str, key_column: str | None = None,
                        version: int | None = Query(None, ge=0)) -> dict[str, Any]:
        import asyncio

        return {"row": await asyncio.to_thread(read_row, name, key, key_column, version)}
