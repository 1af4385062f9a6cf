"""Schema versions: open any store Keel ever made, at the schema this code writes.

On open, :func:`ensure_schema` reads the Alembic revision stamped in the database:

- at ``SCHEMA_HEAD``: nothing to do (one small query; Alembic is not even imported);
- no tables at all: a fresh store, created at the head and stamped;
- Keel 0.1's tables but no version: stamped ``0001_release_0_1``, then migrated;
- an older revision: migrated to the head (``keel/store/migrations/versions/``);
- a revision this code does not know: a newer Keel made it; refused with a clear error.

The whole check runs in one write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
advisory lock), so processes that open a new store at once create it once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from keel.errors import MetadataError
from keel.store.schema import SCHEMA_HEAD, SCHEMA_RELEASE_0_1, meta

_LOCK_KEY = 0x6B65656C  # "keel": PostgreSQL advisory lock held while the schema is checked


def ensure_schema(engine: sa.Engine, url: str) -> None:
    """Bring the database behind ``engine`` to ``SCHEMA_HEAD`` (see the module docstring)."""
    if _current(engine) == SCHEMA_HEAD:
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        tables = set(sa.inspect(conn).get_table_names())
        revision = _read_revision(conn) if "alembic_version" in tables else None
        if revision == SCHEMA_HEAD:
            return
        if revision is None and "runs" not in tables:
            meta.create_all(conn)
            _stamp(conn, SCHEMA_HEAD)
            return
        if revision is not None and revision not in _known_revisions():
            raise MetadataError(
                f"the metadata database {url} has schema version {revision!r}, newer than this Keel "
                f"understands (it writes {SCHEMA_HEAD!r}): a newer Keel made it. Upgrade Keel "
                f"(pip install -U keel), or point KEEL_METADATA_URL / KEEL_HOME at another store")
        _upgrade(conn, revision or SCHEMA_RELEASE_0_1, stamp_first=revision is None)


def schema_revision(engine: sa.Engine) -> str | None:
    """The revision stamped in the database, or None (no store yet, or one made by Keel 0.1)."""
    return _current(engine)


def _current(engine: sa.Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return _read_revision(conn)
    except sa.exc.DBAPIError:  # no alembic_version table (yet)
        return None


def _read_revision(conn: Any) -> str | None:
    rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return rows[0][0] if rows else None


def _config(conn: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "keel.store:migrations")
    config.attributes["connection"] = conn
    return config


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_config(None)).walk_revisions()}


# Alembic's own version table, written here so that creating a store does not import Alembic
# (about 0.2 s of every fresh store: every new KEEL_HOME, every test).
_alembic_version = sa.Table("alembic_version", sa.MetaData(),
                            sa.Column("version_num", sa.String(32), primary_key=True))


def _stamp(conn: Any, revision: str) -> None:
    _alembic_version.create(conn, checkfirst=True)
    conn.execute(_alembic_version.delete())
    conn.execute(_alembic_version.insert().values(version_num=revision))


def _upgrade(conn: Any, start: str, *, stamp_first: bool) -> None:
    from alembic import command

    config = _config(conn)
    if stamp_first:
        command.stamp(config, start)
    command.upgrade(config, SCHEMA_HEAD)


def script_head() -> str:
    """The head revision of the shipped migration scripts (a test pins SCHEMA_HEAD to it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert head is not None
    return head
