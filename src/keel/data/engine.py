"""The Data Engine: versioned tables kept as Parquet in the artifact store.

    v = current.data.save("weather", df)           # -> 1, 2, ...
    current.data.load("weather")                   # latest version as pandas
    current.data.sql("SELECT city, avg(t) FROM weather GROUP BY 1")
    current.data.sql("SELECT count(*) FROM weather@1")   # an older version

A save writes the Parquet file(s) into the byte backend first, each under a key of its own
(``<uuid>-<part>``), and only then records the version in the metadata database in one
transaction (:mod:`keel.store.data_tables`): a writer killed half-way leaves the previous
version readable and no partial version listed. Versions are never rewritten; an append
records the previous version's files plus its own, copying nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import shutil
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.errors import DataError, DataNotFound, UsageError
from keel.store.data_tables import DataFile, DataTables, DataVersion, NewVersion, TableSummary

if TYPE_CHECKING:
    import pandas
    import pyarrow

    from keel.store import Store
    from keel.store.backend import ByteBackend

__all__ = ["VERSIONED_NAME", "DataEngine", "check_name", "check_select", "parse_source", "quote_versions"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VERSIONED_NAME = re.compile(r"(?<![\w\"'.])([A-Za-z_][A-Za-z0-9_]*)@(\d+)\b")
"""A table pinned to a version in a query (``sales@3``): group 1 the name, group 2 the version."""
_MODES = ("overwrite", "append")


def quote_versions(query: str) -> str:
    """``query`` with each ``name@3`` (a table's older version, the engine's own syntax) quoted as
    the identifier ``"name@3"``, the view the engine creates for it: plain DuckDB SQL after that."""
    return VERSIONED_NAME.sub(lambda m: f'"{m.group(0)}"', query)


def check_select(query: str) -> None:
    """Raise a UsageError unless ``query`` is one read-only SELECT (or WITH ... SELECT) over the
    engine's tables: a SQL box that reads tables must never write files or change settings."""
    import duckdb

    try:
        statements = duckdb.extract_statements(quote_versions(query))
    except duckdb.Error as exc:
        raise UsageError(f"SQL failed: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise UsageError("the SQL box runs one read-only SELECT (or WITH ... SELECT); "
                         "other statements are refused")


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid table name, else raise a UsageError saying why."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise UsageError(f"bad table name {name!r}: a table name is a letter or '_' followed by letters, "
                         f"digits or '_' (like weather_2024)")
    return name


def parse_source(source: str) -> tuple[str, int | None]:
    """``"weather"`` -> ("weather", None); ``"weather@3"`` -> ("weather", 3)."""
    name, sep, version = source.partition("@")
    check_name(name)
    if not sep:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise UsageError(f"bad table version in {source!r}: write NAME@N with N a version number >= 1")
    return name, int(version)


def _schema_json(schema: "pyarrow.Schema") -> str:
    return json.dumps({"fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable}
                                  for f in schema]})


def _to_arrow(data: Any) -> "pyarrow.Table":
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return _normalize(data)
    if isinstance(data, pa.RecordBatch):
        return _normalize(pa.Table.from_batches([data]))
    module = type(data).__module__
    if module.startswith("pandas"):
        return _normalize(pa.Table.from_pandas(data, preserve_index=False))
    if module.startswith("polars"):
        return _normalize(data.to_arrow())
    raise UsageError(f"cannot save a {type(data).__module__}.{type(data).__name__}: pass a pandas DataFrame, "
                     f"a pyarrow Table or a Spark DataFrame")


def _is_spark(data: Any) -> bool:
    return type(data).__module__.startswith("pyspark") and hasattr(data, "write")


def _normalize(table: "pyarrow.Table") -> "pyarrow.Table":
    """One spelling per type, so versions from pandas, Arrow and Spark compare equal:
    ``string``/``binary``/``list`` (not the ``large_`` ones pandas makes), list items named
    ``item`` (Spark says ``element``)."""
    schema = _normal_schema(table.schema)
    return table if schema.equals(table.schema) else table.cast(schema)


def _normal_schema(schema: "pyarrow.Schema") -> "pyarrow.Schema":
    import pyarrow as pa

    def fix(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t):
            return pa.string()
        if pa.types.is_large_binary(t):
            return pa.binary()
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return pa.list_(pa.field("item", fix(t.value_type), t.value_field.nullable))
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, fix(f.type), f.nullable) for f in t])
        return t

    return pa.schema([pa.field(f.name, fix(f.type), f.nullable) for f in schema])


@dataclass(frozen=True)
class _Options:
    row_group_size: int | None
    compression: str


class DataEngine:
    """Versioned tables over one store. ``lineage`` names the task that writes (its pathspec)."""

    def __init__(self, tables: DataTables, backend: "ByteBackend", *, lineage: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None):
        self.tables = tables
        self.backend = backend
        self.lineage = lineage
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._sql = _SqlViews()

    @classmethod
    def from_store(cls, store: "Store", *, lineage: str | None = None) -> "DataEngine":
        return cls(store.metadata.data, store.artifacts.backend, lineage=lineage,
                   cache_dir=store.settings.home / "cache" / "data")

    @classmethod
    def from_env(cls, *, lineage: str | None = None) -> "DataEngine":
        from keel.store import Store

        return cls.from_store(Store.from_env(), lineage=lineage)

    # -- writing ---------------------------------------------------------------------------
    def save(self, name: str, data: Any, *, mode: str = "overwrite", row_group_size: int | None = None,
             compression: str = "snappy") -> int:
        """Save ``data`` (pandas, pyarrow.Table, Spark DataFrame) as a new version; return its number.

        ``mode="append"`` makes a version holding the previous version's rows and these
        (the old files are shared, not copied). ``row_group_size`` sets the Parquet row
        groups (what :class:`RowGroupLoader` shuffles by)."""
        check_name(name)
        if mode not in _MODES:
            raise UsageError(f"save({name!r}, mode={mode!r}): mode is 'overwrite' or 'append'")
        options = _Options(row_group_size, compression)
        if _is_spark(data):
            return self._save_spark(name, data, options, mode)
        table = _to_arrow(data)
        if mode == "append":
            self._check_append(name, table.schema)
        files = (self._write_file(table, options),)
        return self._commit(name, files, table.schema, mode)

    def _check_append(self, name: str, schema: "pyarrow.Schema") -> None:
        parent = self.tables.get_version(name)
        if parent is not None and parent.schema != _schema_json(schema):
            raise DataError(_schema_mismatch(name, parent, schema))

    def _save_spark(self, name: str, df: Any, options: _Options, mode: str) -> int:
        """Spark's own Parquet writer: the executors write the part files into a staging
        folder beside the backend's temp files (nothing is collected to the driver, so a table
        larger than its memory saves), then each file is committed under a key of its own and
        the version recorded, as for any other save."""
        import pyarrow.parquet as pq

        reserved = self.backend.new_temp()          # a unique name in the backend's temp folder
        staging = Path(f"{reserved}-spark")
        try:
            _spark_write(df, staging, options)
            parts = sorted(staging.glob("part-*.parquet"))
            if not parts:
                raise DataError(f"saving {name!r}: Spark wrote no Parquet files into {staging}")
            schema = _normal_schema(pq.read_schema(parts[0]))
            if mode == "append":
                self._check_append(name, schema)
            rows = [pq.read_metadata(p).num_rows for p in parts]
            kept = [(p, n) for p, n in zip(parts, rows) if n] or [(parts[0], 0)]  # empty partitions go
            stem = uuid.uuid4().hex
            files = []
            for i, (part, n) in enumerate(kept):
                size = part.stat().st_size
                key = f"{stem}-{i:05d}"
                self.backend.commit(part, key)
                files.append(DataFile(key=key, rows=n, bytes=size))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            reserved.unlink(missing_ok=True)
        return self._commit(name, tuple(files), schema, mode)

    def _commit(self, name: str, files: tuple[DataFile, ...], schema: "pyarrow.Schema", mode: str) -> int:
        new = NewVersion(name=name, files=files, schema=_schema_json(schema), mode=mode,
                         lineage=self.lineage, user=_user())
        return self.tables.commit_version(new).version

    def _write_file(self, table: "pyarrow.Table", options: _Options) -> DataFile:
        import pyarrow.parquet as pq

        temp = self.backend.new_temp()
        try:
            pq.write_table(table, temp, row_group_size=options.row_group_size or 1024 * 1024,
                           compression=options.compression)
            size = os.path.getsize(temp)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        key = f"{uuid.uuid4().hex}-00000"
        self.backend.commit(temp, key)
        return DataFile(key=key, rows=table.num_rows, bytes=size)

    # -- reading ---------------------------------------------------------------------------
    def version(self, name: str, version: int | None = None) -> DataVersion:
        """The record of a version (the latest by default); DataNotFound names what exists."""
        check_name(name)
        found = self.tables.get_version(name, version)
        if found is not None:
            return found
        known = self.tables.list_versions(name)
        if not known:
            names = ", ".join(t.name for t in self.tables.list_tables()) or "none yet"
            raise DataNotFound(f"no table {name!r} in the Data Engine (tables: {names}). "
                               f"Save one with current.data.save({name!r}, df)")
        raise DataNotFound(f"table {name!r} has no version {version}: its versions are "
                           f"{', '.join(str(v.version) for v in known)}")

    def history(self, name: str) -> list[DataVersion]:
        """Every version of ``name``, oldest first."""
        self.version(name)
        return self.tables.list_versions(name)

    def list(self) -> list[TableSummary]:
        """Every table with its latest version."""
        return self.tables.list_tables()

    def paths(self, name: str, version: int | None = None) -> builtins.list[str]:
        """The Parquet files of a version: local paths, or ``s3://`` URLs on an S3 store."""
        v = self.version(*_split(name, version))
        out = []
        for f in v.files:
            local = self.backend.local_path(f.key)
            out.append(str(local) if local is not None else self.backend.location(f.key))
        return out

    def local_paths(self, name: str, version: int | None = None) -> builtins.list[str]:
        """The Parquet files of a version on this machine (downloaded once into a cache if needed)."""
        v = self.version(*_split(name, version))
        return [self._local(f.key) for f in v.files]

    def _local(self, key: str) -> str:
        local = self.backend.local_path(key)
        if local is not None:
            return str(local)
        import tempfile

        cache = self._cache_dir or Path(tempfile.gettempdir()) / "keel-data-cache"
        path = cache / key
        if not path.exists():  # keys are never rewritten, so a cached file never goes stale
            cache.mkdir(parents=True, exist_ok=True)
            temp = cache / f".{key}.{os.getpid()}.{uuid.uuid4().hex}"
            with self.backend.open(key) as src, open(temp, "wb") as dst:
                while chunk := src.read(8 << 20):
                    dst.write(chunk)
            os.replace(temp, path)
        return str(path)

    def arrow(self, name: str, version: int | None = None, columns: builtins.list[str] | None = None) -> "pyarrow.Table":
        """A version as a ``pyarrow.Table`` (the latest by default)."""
        import pyarrow.dataset as ds

        name, version = _split(name, version)
        v = self.version(name, version)
        if not v.files:
            import pyarrow as pa

            return pa.schema([]).empty_table()
        dataset = ds.dataset(self.local_paths(name, v.version), format="parquet")
        try:
            return _normalize(dataset.to_table(columns=columns))
        except (KeyError, ValueError) as exc:
            raise UsageError(f"cannot read columns {columns} of {name}@{v.version}: {exc}. "
                             f"Its columns are {', '.join(dataset.schema.names)}") from None

    def load(self, name: str, version: int | None = None, columns: builtins.list[str] | None = None) -> "pandas.DataFrame":
        """A version as a pandas DataFrame (the latest by default)."""
        return self.arrow(name, version, columns).to_pandas()

    def sql(self, query: str, versions: Mapping[str, int] | None = None) -> "pandas.DataFrame":
        """Run DuckDB SQL where each table name is a view of its latest version.

        ``name@3`` in the query, or ``versions={"name": 3}``, reads an older version."""
        return self.sql_arrow(query, versions).to_pandas()

    def sql_arrow(self, query: str, versions: Mapping[str, int] | None = None) -> "pyarrow.Table":
        import duckdb

        versions = dict(versions or {})
        for n, ver in versions.items():
            self.version(n, ver)
        pinned: dict[str, tuple[str, int]] = {}

        def pin(m: re.Match[str]) -> str:
            view = f"{m.group(1)}@{m.group(2)}"
            pinned[view] = (m.group(1), int(m.group(2)))
            return f'"{view}"'

        query = VERSIONED_NAME.sub(pin, query)
        wanted: dict[str, list[str]] = {}
        for summary in self.tables.list_tables():
            asked = versions.get(summary.name)
            v = summary.latest if asked is None else self.version(summary.name, asked)
            wanted[summary.name] = [self._local(f.key) for f in v.files]
        for view, (n, ver) in pinned.items():
            wanted[view] = [self._local(f.key) for f in self.version(n, ver).files]
        with self._sql.connection(wanted) as con:
            try:
                relation = con.sql(query)
                if relation is None:  # a statement with no result (CREATE, SET, ...)
                    import pyarrow as pa

                    return pa.table({})
                return relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
            except duckdb.Error as exc:
                raise DataError(f"SQL failed: {str(exc).splitlines()[0]}\n  query: {query}") from None

    def close(self) -> None:
        """Close the engine's DuckDB connection (a later ``sql`` opens a new one)."""
        self._sql.close()

    def export(self, name: str, url: str, table: str | None = None, *, version: int | None = None,
               if_exists: str = "replace", chunk_rows: int = 50_000) -> int:
        """Write a version to an external SQL database (a SQLAlchemy URL); return the rows written.

        The target table (``table``, default ``name``) is replaced unless ``if_exists="append"``."""
        import pyarrow.dataset as ds
        import sqlalchemy as sa

        name, version = _split(name, version)
        target = table or name
        if if_exists not in ("replace", "append", "fail"):
            raise UsageError(f"export(if_exists={if_exists!r}): use 'replace', 'append' or 'fail'")
        v = self.version(name, version)
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        try:
            engine = sa.create_engine(url)
        except ImportError as exc:
            from keel.store.sql import missing_driver

            raise UsageError(f"cannot export {name}@{v.version}: " + missing_driver(url, exc)) from None
        except sa.exc.ArgumentError as exc:
            raise UsageError(f"cannot export {name}@{v.version} to {_safe_url(url)}: {exc}") from None
        written = 0
        try:
            with engine.begin() as conn:
                mode = if_exists
                batches: Iterable[Any] = ()
                if v.files:
                    dataset = ds.dataset([self._local(f.key) for f in v.files], format="parquet")
                    batches = dataset.to_batches(batch_size=chunk_rows)
                for batch in batches:
                    frame = batch.to_pandas()
                    frame.to_sql(target, conn, if_exists=mode, index=False, method="multi",
                                 chunksize=max(1, 30_000 // max(1, len(frame.columns))))
                    written += len(frame)
                    mode = "append"
        except sa.exc.SQLAlchemyError as exc:
            raise DataError(f"exporting {name}@{v.version} to table {target!r} at {_safe_url(url)} failed: "
                            f"{str(exc).splitlines()[0]}") from None
        except ValueError as exc:
            raise DataError(f"exporting {name}@{v.version} to table {target!r} at {_safe_url(url)} failed: "
                            f"{exc}") from None
        finally:
            engine.dispose()
        return written


class _SqlViews:
    """One DuckDB connection per engine and process, where each table is a view over its
    version's files. A view is replaced only when its files change, and DuckDB keeps the
    Parquet footers it has read (``parquet_metadata_cache``), so a repeated query does not
    re-read metadata. Statements run one at a time (a DuckDB connection is not shared
    between threads); a query that creates or drops something changes only this engine's
    in-memory database. Every connection is closed before this process forks (a child that
    inherits DuckDB's running worker threads crashes), and reopened on the next query."""

    _live: "weakref.WeakSet[_SqlViews]" = weakref.WeakSet()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._con: Any = None
        self._pid = 0
        self._views: dict[str, tuple[str, ...]] = {}
        _SqlViews._live.add(self)

    @contextlib.contextmanager
    def connection(self, wanted: Mapping[str, list[str]]) -> Iterator[Any]:
        with self._lock:
            if self._con is None or self._pid != os.getpid():  # never use a connection across fork
                import duckdb

                self._con = duckdb.connect()
                self._con.execute("SET parquet_metadata_cache = true")
                self._pid = os.getpid()
                self._views = {}
            con = self._con
            for view in [v for v in self._views if v not in wanted]:
                con.execute(f'DROP VIEW IF EXISTS "{_quote(view)}"')
                del self._views[view]
            for view, files in wanted.items():
                if self._views.get(view) != tuple(files):
                    _create_view(con, view, files)
                    self._views[view] = tuple(files)
            yield con

    def close(self) -> None:
        with self._lock:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con, self._views = None, {}

    @classmethod
    def close_all(cls) -> None:
        for views in list(cls._live):
            views.close()


os.register_at_fork(before=_SqlViews.close_all)


def _quote(view: str) -> str:
    return view.replace('"', '""')


def _create_view(con: Any, view: str, files: list[str]) -> None:
    quoted = _quote(view)
    if not files:
        con.execute(f'CREATE OR REPLACE VIEW "{quoted}" AS SELECT NULL WHERE FALSE')
        return
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f'CREATE OR REPLACE VIEW "{quoted}" AS SELECT * FROM read_parquet([{listing}])')


def _spark_write(df: Any, folder: Path, options: _Options) -> None:
    """Write ``df`` as Parquet into ``folder`` with Spark's writer, timestamps in microseconds
    (Spark's default is INT96, which other readers turn into nanoseconds)."""
    conf = df.sparkSession.conf
    key = "spark.sql.parquet.outputTimestampType"
    before = conf.get(key, None)
    conf.set(key, "TIMESTAMP_MICROS")
    try:
        writer = df.write.mode("errorifexists").option("compression", options.compression)
        if options.row_group_size:
            writer = writer.option("parquet.block.row.count.limit", str(options.row_group_size))
        writer.parquet(folder.absolute().as_uri())
    except Exception as exc:  # py4j and Spark raise from several modules
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"Spark could not write the table's Parquet files into {folder}: {first}. "
                        f"The executors must reach this folder (a local master, or a cluster on "
                        f"this machine)") from None
    finally:
        if before is None:
            conf.unset(key)
        else:
            conf.set(key, before)


def _split(name: str, version: int | None) -> tuple[str, int | None]:
    if "@" in name:
        base, pinned = parse_source(name)
        if version is not None and pinned != version:
            raise UsageError(f"{name!r} names version {pinned} but version={version} was passed")
        return base, pinned
    return name, version


def _schema_mismatch(name: str, parent: DataVersion, schema: "pyarrow.Schema") -> str:
    old = {f["name"]: f["type"] for f in json.loads(parent.schema)["fields"]}
    new = {f.name: str(f.type) for f in schema}
    diffs = [f"{c}: {old.get(c, 'missing')} -> {new.get(c, 'missing')}"
             for c in sorted(set(old) | set(new)) if old.get(c) != new.get(c)]
    return (f"cannot append to {name}@{parent.version}: the schema differs ({'; '.join(diffs) or 'column order'}). "
            f"Cast the columns to the table's types, or save with mode='overwrite'")


def _safe_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in containers without passwd entries
        return None
