"""The Data Engine on real parts: SQLite metadata, Parquet files in a local artifact store,
DuckDB, PostgreSQL for export, and a writer killed with SIGKILL half-way through a save."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pyarrow as pa
import pytest

import keel.data
from keel.data.engine import DataEngine
from keel.errors import DataError, DataNotFound, UsageError
from keel.store.backend import MemoryBackend
from keel.store.data_tables import MemoryDataTables


@pytest.fixture
def engine(keel_home) -> DataEngine:
    return DataEngine.from_env(lineage="Flow/1/start/1")


def frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"id": range(start, start + n), "city": [f"c{i % 3}" for i in range(n)],
                         "temp": [float(i) / 2 for i in range(n)]})


def test_save_returns_increasing_versions_and_load_reads_each(engine):
    assert engine.save("weather", frame(5)) == 1
    assert engine.save("weather", frame(3, start=100)) == 2
    assert engine.load("weather")["id"].tolist() == [100, 101, 102]
    assert engine.load("weather", version=1)["id"].tolist() == [0, 1, 2, 3, 4]
    assert engine.arrow("weather@1").num_rows == 5


def test_a_version_records_lineage_schema_rows_and_bytes(engine):
    engine.save("weather", frame(10))
    v = engine.version("weather")
    assert v.lineage == "Flow/1/start/1"
    assert v.rows == 10 and v.bytes == sum(os.path.getsize(p) for p in engine.paths("weather"))
    fields = json.loads(v.schema)["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [("id", "int64"), ("city", "string"), ("temp", "double")]


def test_append_shares_the_previous_files_and_adds_its_own(engine):
    engine.save("weather", frame(4))
    old_paths = engine.paths("weather")
    assert engine.save("weather", frame(2, start=10), mode="append") == 2
    new_paths = engine.paths("weather")
    assert new_paths[: len(old_paths)] == old_paths and len(new_paths) == 2
    assert sorted(engine.load("weather")["id"]) == [0, 1, 2, 3, 10, 11]
    assert engine.version("weather").parent == 1 and engine.version("weather").rows == 6


def test_append_with_another_schema_says_which_columns_differ(engine):
    engine.save("weather", frame(2))
    with pytest.raises(DataError, match=r"temp: double -> string"):
        engine.save("weather", frame(2).astype({"temp": str}), mode="append")


def test_bad_table_names_are_rejected_with_the_rule(engine):
    for bad in ("1abc", "a-b", "", "x y", "drop;table"):
        with pytest.raises(UsageError, match="bad table name"):
            engine.save(bad, frame(1))


def test_unknown_table_and_version_name_what_exists(engine):
    engine.save("weather", frame(1))
    with pytest.raises(DataNotFound, match=r"no table 'nope'.*tables: weather"):
        engine.load("nope")
    with pytest.raises(DataNotFound, match=r"no version 7: its versions are 1"):
        engine.load("weather", version=7)


def test_sql_reads_latest_versions_and_pinned_ones(engine):
    engine.save("weather", frame(6))
    engine.save("weather", frame(2))
    engine.save("cities", pd.DataFrame({"city": ["c0", "c1"], "country": ["fr", "de"]}))
    assert engine.sql("SELECT count(*) AS n FROM weather")["n"][0] == 2
    assert engine.sql("SELECT count(*) AS n FROM weather@1")["n"][0] == 6
    assert engine.sql("SELECT count(*) AS n FROM weather", versions={"weather": 1})["n"][0] == 6
    joined = engine.sql("SELECT w.city, c.country FROM weather@1 w JOIN cities c USING (city) ORDER BY id")
    assert joined["country"].tolist() == ["fr", "de", "fr", "de"]


def test_a_bad_query_is_a_data_error_with_the_query(engine):
    engine.save("weather", frame(1))
    with pytest.raises(DataError, match="SQL failed.*\n  query: SELECT nope FROM weather"):
        engine.sql("SELECT nope FROM weather")


def test_saves_and_reads_a_pyarrow_table_with_row_groups(engine):
    import pyarrow.parquet as pq

    table = pa.table({"x": pa.array(range(1000), pa.int32())})
    engine.save("t", table, row_group_size=100)
    assert pq.ParquetFile(engine.paths("t")[0]).metadata.num_row_groups == 10
    assert engine.arrow("t").equals(table)


def test_module_level_calls_work_outside_a_task(keel_home):
    assert keel.data.save("weather", frame(3)) == 1
    assert keel.data.load("weather").shape == (3, 3)
    assert keel.data.sql("SELECT sum(id) AS s FROM weather")["s"][0] == 3
    assert [t.name for t in keel.data.tables()] == ["weather"]
    assert keel.data.history("weather")[0].lineage is None


def test_the_in_memory_fakes_behave_like_the_real_store():
    engine = DataEngine(MemoryDataTables(), MemoryBackend())
    engine.save("t", frame(3))
    engine.save("t", frame(2), mode="append")
    assert engine.load("t")["id"].tolist() == [0, 1, 2, 0, 1]
    assert [v.version for v in engine.history("t")] == [1, 2]


_WRITER = textwrap.dedent("""
    import sys, pandas as pd
    import keel.data
    name, n, mode, instance = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    for i in range(n):
        keel.data.save(name, pd.DataFrame({"instance": [instance], "i": [i]}), mode=mode)
""")


def test_parallel_appenders_each_get_a_version_and_lose_no_rows(engine, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), "t", "10", "append", str(k)]) for k in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert [v.version for v in engine.history("t")] == list(range(1, 41))
    rows = engine.load("t")
    assert sorted(zip(rows["instance"], rows["i"])) == [(k, i) for k in range(4) for i in range(10)]


_KILLED = textwrap.dedent("""
    import os, sys, pyarrow as pa, pyarrow.parquet as pq
    import keel.data
    real = pq.write_table
    def slow_write(table, where, **kw):
        real(table, where, **kw)
        print("file written", flush=True)
        import time
        time.sleep(60)                     # killed here: the file exists, the version does not
    pq.write_table = slow_write
    keel.data.save("t", pa.table({"x": list(range(100))}))
""")


def test_kill_9_during_a_save_leaves_the_previous_version_and_no_partial_one(engine, tmp_path):
    engine.save("t", pa.table({"x": [1, 2, 3]}))
    script = tmp_path / "killed.py"
    script.write_text(_KILLED)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "file written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert [v.version for v in engine.history("t")] == [1]
    assert engine.load("t")["x"].tolist() == [1, 2, 3]
    assert engine.save("t", pa.table({"x": [9]})) == 2


def test_export_writes_the_table_to_postgresql(engine, postgres_url):
    import sqlalchemy as sa

    engine.save("weather", frame(120))
    assert engine.export("weather", postgres_url, table="weather_out") == 120
    engine.save("weather", frame(5))
    assert engine.export("weather", postgres_url, table="weather_out") == 5  # replaced, not appended
    pg = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with pg.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, city, temp FROM weather_out ORDER BY id")).all()
    pg.dispose()
    assert rows == [(i, f"c{i % 3}", i / 2) for i in range(5)]


def test_export_to_a_database_that_is_not_there_is_a_data_error(engine):
    engine.save("weather", frame(1))
    with pytest.raises(DataError, match=r"exporting weather@1 to table 'weather' at postgresql\+psycopg://u:\*\*\*@"):
        engine.export("weather", "postgresql://u:secret@127.0.0.1:1/db")


def test_current_data_records_the_task_in_a_flow_run(keel_home, tmp_path):
    from keel_testing import run_in_process, write_flow

    path = write_flow(tmp_path, "dataflow", '''
        from keel import FlowSpec, step, current
        import pandas as pd

        class DataFlow(FlowSpec):
            @step
            def start(self):
                self.v = current.data.save("scores", pd.DataFrame({"x": [1, 2, 3]}))
                self.next(self.end)

            @step
            def end(self):
                self.total = int(current.data.sql("SELECT sum(x) AS s FROM scores")["s"][0])
    ''')
    run_in_process(path)
    v = DataEngine.from_env().version("scores")
    assert v.lineage is not None and v.lineage.startswith("DataFlow/1/start/")
    from keel import Flow

    assert Flow("DataFlow").latest_run.data.total == 6


def test_sql_views_follow_new_versions_and_a_forked_child_queries_on_its_own_connection(engine):
    def count() -> int:
        return int(engine.sql("SELECT count(*) AS n FROM weather")["n"][0])

    engine.save("weather", frame(3))
    assert count() == 3
    engine.save("weather", frame(5))
    assert count() == 5                                    # the kept view moved to the new version
    assert engine.sql("SELECT count(*) AS n FROM weather", versions={"weather": 1})["n"][0] == 3
    assert count() == 5
    pid = os.fork()
    if pid == 0:  # the child: DuckDB's threads were not inherited, its first query opens a connection
        code = 1
        try:
            code = 0 if count() == 5 else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60       # an inherited connection hangs or crashes the child
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("a forked child's first query hung (an inherited DuckDB connection)")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert count() == 5


def test_check_select_takes_one_select_over_versioned_names_and_refuses_the_rest():
    from keel.data.engine import check_select, quote_versions

    assert quote_versions("SELECT * FROM weather@3 JOIN w2 USING (d)") == 'SELECT * FROM "weather@3" JOIN w2 USING (d)'
    check_select("WITH t AS (SELECT * FROM weather@3) SELECT count(*) FROM t")
    for bad in ("DROP TABLE weather", "SELECT 1; SELECT 2", "COPY weather TO 'x.csv'", "SET threads = 1"):
        with pytest.raises(UsageError, match="one read-only SELECT"):
            check_select(bad)
    with pytest.raises(UsageError, match="SQL failed"):
        check_select("SELEC nonsense")
