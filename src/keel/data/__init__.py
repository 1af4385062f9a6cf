"""The Data Engine outside a task, and the row-group loader.

    import keel.data
    keel.data.save("weather", df)                 # -> version number
    keel.data.load("weather"); keel.data.arrow("weather", version=3)
    keel.data.sql("SELECT city, avg(t) FROM weather GROUP BY 1")
    keel.data.paths("weather"); keel.data.export("weather", "postgresql://...")
    for batch in keel.data.RowGroupLoader("weather", batch_size=4096, seed=0): ...

Inside a step or job use ``current.data``: the same calls, with the writing task recorded as
each version's lineage. Settings (``KEEL_HOME``, ``KEEL_METADATA_URL``, ``KEEL_ARTIFACT_URL``)
are read on the first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.data.engine import DataEngine

__all__ = ["DataEngine", "RowGroupLoader", "arrow", "export", "history", "load", "paths", "save", "sql",
           "tables"]


def _engine() -> "DataEngine":
    from keel.runtime.current import current

    return current.data


def save(name: str, data: Any, *, mode: str = "overwrite", row_group_size: int | None = None) -> int:
    """Save a pandas DataFrame, pyarrow Table or Spark DataFrame as a new version of ``name``."""
    return _engine().save(name, data, mode=mode, row_group_size=row_group_size)


def load(name: str, version: int | None = None, columns: list[str] | None = None) -> Any:
    """A version of ``name`` (the latest by default) as a pandas DataFrame."""
    return _engine().load(name, version, columns)


def arrow(name: str, version: int | None = None, columns: list[str] | None = None) -> Any:
    """A version of ``name`` (the latest by default) as a pyarrow Table."""
    return _engine().arrow(name, version, columns)


def sql(query: str, versions: dict[str, int] | None = None) -> Any:
    """DuckDB SQL over the latest versions (``name@3`` or ``versions=`` for older ones), as pandas."""
    return _engine().sql(query, versions)


def paths(name: str, version: int | None = None) -> list[str]:
    """The Parquet files of a version, for Spark, pyarrow or DuckDB."""
    return _engine().paths(name, version)


def export(name: str, url: str, table: str | None = None, **options: Any) -> int:
    """Write a version to an external SQL database (a SQLAlchemy URL); return the rows written."""
    return _engine().export(name, url, table, **options)


def history(name: str) -> list[Any]:
    """Every version of ``name``, oldest first."""
    return _engine().history(name)


def tables() -> list[Any]:
    """Every table with its latest version."""
    return _engine().list()


def __getattr__(name: str) -> Any:
    if name == "RowGroupLoader":
        from keel.data.loader import RowGroupLoader

        return RowGroupLoader
    if name == "DataEngine":
        from keel.data.engine import DataEngine

        return DataEngine
    raise AttributeError(f"module 'keel.data' has no attribute {name!r}")
