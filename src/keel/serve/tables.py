"""Data Engine tables over REST: ``GET /tables/{name}`` (a page) and ``/tables/{name}/rows/{key}``.

A job writes scores with ``current.data.save("scores", df)``; an app reads them here
(Skafos' Data Endpoints). Both routes read one immutable version of the table through
:class:`keel.data.engine.DataEngine`; a page reads only the Parquet row groups it overlaps.
Every 404 and 422 names the field (``name``, ``version``, ``key``, ``columns``,
``key_column``) and never echoes what the client sent.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import math
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.errors import BadInput

if TYPE_CHECKING:
    from keel.data.engine import DataEngine
    from keel.store.data_tables import DataVersion

__all__ = ["TablePage", "TableReader", "add_table_routes", "data_engine_available", "jsonable"]

_MAX_LIMIT = 10_000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def data_engine_available() -> bool:
    """True when the Data Engine's own dependencies (pyarrow, duckdb) are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pyarrow", "duckdb"))


@dataclass(frozen=True)
class TablePage:
    """One page of a version: ``rows`` (JSON-ready dicts), the ``version`` read, the table's ``total`` rows."""

    rows: list[dict[str, Any]]
    version: int
    total: int


def jsonable(value: Any) -> Any:
    """A value read from Parquet as plain JSON: NaN/inf -> None, bytes -> base64, times -> ISO 8601."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


class TableReader:
    """Reads pages and rows of Data Engine tables for one server process (one engine, made on first use)."""

    def __init__(self, engine: "DataEngine | None" = None):
        self._engine = engine
        self._lock = threading.Lock()

    @property
    def engine(self) -> "DataEngine":
        with self._lock:
            if self._engine is None:
                from keel.data.engine import DataEngine

                self._engine = DataEngine.from_env()
            return self._engine

    def version(self, name: str, version: int | None) -> "DataVersion":
        if _NAME.fullmatch(name) is None:
            raise BadInput("name", "there is no table of that name (a table name is letters, digits and '_'); "
                                   "see: keel data list", 404)
        found = self.engine.tables.get_version(name, version)
        if found is not None:
            return found
        if version is not None and self.engine.tables.get_version(name) is not None:
            raise BadInput("version", "the table has no such version; see: keel data history NAME", 404)
        raise BadInput("name", "there is no table of that name; see: keel data list", 404)

    def page(self, name: str, version: int | None, limit: int, offset: int,
             columns: list[str] | None) -> TablePage:
        import pyarrow.parquet as pq

        v = self.version(name, version)
        columns = self._columns(v, columns, "columns")
        rows: list[dict[str, Any]] = []
        start, end = offset, offset + limit
        seen = 0
        for path in self._paths(v):
            if seen >= end:
                break
            file = pq.ParquetFile(path)
            for group in range(file.num_row_groups):
                n = file.metadata.row_group(group).num_rows
                lo, hi = seen, seen + n
                seen = hi
                if hi <= start:
                    continue
                if lo >= end:
                    break
                part = file.read_row_group(group, columns=columns)
                rows.extend(part.slice(max(start - lo, 0), end - max(lo, start)).to_pylist())
        return TablePage(rows=[jsonable(r) for r in rows], version=v.version, total=v.rows)

    def row(self, name: str, key: str, key_column: str | None, version: int | None) -> tuple[dict[str, Any], int]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        v = self.version(name, version)
        names = _column_names(v)
        column = key_column if key_column is not None else (names[0] if names else "")
        if column not in names:
            raise BadInput("key_column", "the table has no such column; its columns are: " + ", ".join(names))
        dataset = ds.dataset(self._paths(v), format="parquet")
        kind = dataset.schema.field(column).type
        try:
            typed = pc.cast(pa.array([key]), kind)[0]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise BadInput("key", f"the key is not a valid {kind} value for the key column {column}") from None
        found = dataset.head(1, filter=ds.field(column) == typed)
        if found.num_rows == 0:
            raise BadInput("key", f"the table has no row with that value in its key column {column}", 404)
        return jsonable(found.to_pylist()[0]), v.version

    def _paths(self, v: "DataVersion") -> list[str]:
        return self.engine.local_paths(v.name, v.version)

    @staticmethod
    def _columns(v: "DataVersion", wanted: list[str] | None, field: str) -> list[str] | None:
        if not wanted:
            return None
        names = _column_names(v)
        if any(c not in names for c in wanted):
            raise BadInput(field, "the table has no such column; its columns are: " + ", ".join(names))
        return wanted


def _column_names(v: "DataVersion") -> list[str]:
    import json

    return [f["name"] for f in json.loads(v.schema).get("fields", [])]


def add_table_routes(app: Any, reader: TableReader | None = None) -> None:
    """Add the two table routes (documented in /openapi.json) to a FastAPI ``app``."""
    import asyncio

    from fastapi import Path, Query
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel

    class TablePageOut(BaseModel):
        rows: list[dict[str, Any]]
        version: int
        total: int

    class TableRowOut(BaseModel):
        row: dict[str, Any]
        version: int

    class TableError(BaseModel):
        error: str
        field: str | None = None

    if not data_engine_available():
        @app.get("/tables/{name}", include_in_schema=False)
        @app.get("/tables/{name}/rows/{key}", include_in_schema=False)
        async def no_tables(name: str, key: str = "") -> JSONResponse:
            return JSONResponse({"error": "tables are served from the Data Engine, which needs pyarrow and duckdb; "
                                          "install Keel with the data extra (pip install keel[data])"},
                                status_code=501)
        return

    reader = reader or TableReader()
    errors: dict[int | str, dict[str, Any]] = {
        404: {"model": TableError, "description": "no such table, version or row"},
        422: {"model": TableError, "description": "a bad parameter"}}

    @app.get("/tables/{name}", response_model=TablePageOut, responses=errors,
             summary="A page of a Data Engine table: {rows, version, total}")
    async def table_page(name: str = Path(..., description="the table's name"),
                         version: int | None = Query(None, ge=1, le=2**63 - 1, description="a version (default: the latest)"),
                         limit: int = Query(100, ge=1, le=_MAX_LIMIT), offset: int = Query(0, ge=0),
                         columns: str | None = Query(None, description="comma-separated column names")
                         ) -> JSONResponse:
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        page = await asyncio.to_thread(reader.page, name, version, limit, offset, cols)
        return JSONResponse({"rows": page.rows, "version": page.version, "total": page.total})

    @app.get("/tables/{name}/rows/{key}", response_model=TableRowOut, responses=errors,
             summary="One row of a Data Engine table, by the value of its key column")
    async def table_row(name: str = Path(..., description="the table's name"),
                        key: str = Path(..., description="the key column's value"),
                        key_column: str | None = Query(None, description="default: the table's first column"),
                        version: int | None = Query(None, ge=1, le=2**63 - 1, description="a version (default: the latest)")
                        ) -> JSONResponse:
        row, resolved = await asyncio.to_thread(reader.row, name, key, key_column, version)
        return JSONResponse({"row": row, "version": resolved})
