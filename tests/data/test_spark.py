"""Spark on real parts: a standalone master and worker started from pyspark's jars (one core,
512 MB), a Data Engine round trip of every common type, and the add-on in a project run."""

from __future__ import annotations

import datetime
import decimal
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

pytest.importorskip("pyspark")

from keel.addons.spark import SparkSettings  # noqa: E402
from keel.data.engine import DataEngine  # noqa: E402

pytestmark = pytest.mark.slow


def all_types() -> pa.Table:
    return pa.table({
        "i8": pa.array([1, -2, None], pa.int8()), "i16": pa.array([300, -1, 0], pa.int16()),
        "i32": pa.array([70000, 0, None], pa.int32()), "i64": pa.array([2**40, -1, 0], pa.int64()),
        "f32": pa.array([1.5, None, -0.25], pa.float32()), "f64": pa.array([0.1, 2.5e300, None], pa.float64()),
        "b": pa.array([True, False, None]), "s": pa.array(["a", "é", None]),
        "bin": pa.array([b"\x00\x01", b"", None], pa.binary()),
        "dec": pa.array([decimal.Decimal("12.34"), decimal.Decimal("-0.01"), None], pa.decimal128(10, 2)),
        "d": pa.array([datetime.date(2024, 2, 29), datetime.date(1970, 1, 1), None], pa.date32()),
        "ts": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, 123456), datetime.datetime(1999, 12, 31), None],
                       pa.timestamp("us")),
        "vec": pa.array([[1.0, 2.0], [], None], pa.list_(pa.float32())),
        "st": pa.array([{"x": 1, "y": "p"}, {"x": None, "y": "q"}, None],
                       pa.struct([("x", pa.int64()), ("y", pa.string())])),
    })


def test_the_cluster_has_its_worker_and_sizes_executors_to_fit(spark_cluster):
    status = spark_cluster._status()
    assert status is not None and [w["cores"] for w in status["workers"] if w["state"] == "ALIVE"] == [1]
    conf = spark_cluster.executor_conf()
    assert conf["spark.executor.memory"] == "512m" and conf["spark.executor.cores"] == "1"


def test_every_type_round_trips_keel_spark_keel_duckdb(spark, keel_home):
    engine = DataEngine.from_env()
    original = all_types()
    engine.save("types", original)
    frame = spark.read.parquet(*engine.paths("types"))
    assert spark.sparkContext.master == os.environ["KEEL_SPARK_MASTER"]
    engine.save("types_back", frame.orderBy("i64", ascending=False))
    back = engine.arrow("types_back")
    assert back.schema.equals(original.schema), (back.schema, original.schema)
    assert back.sort_by([("i64", "descending")]).equals(original.sort_by([("i64", "descending")]))
    same = engine.sql("SELECT count(*) AS n FROM (SELECT * FROM types EXCEPT SELECT * FROM types_back)")
    assert same["n"][0] == 0


def test_a_spark_computation_runs_on_the_cluster_and_is_saved(spark, keel_home):
    engine = DataEngine.from_env()
    totals = spark.range(0, 1000).selectExpr("id % 3 AS k", "id").groupBy("k").sum("id").orderBy("k")
    engine.save("totals", totals)
    assert engine.load("totals")["sum(id)"].tolist() == [sum(range(0, 1000, 3)), sum(range(1, 1000, 3)),
                                                          sum(range(2, 1000, 3))]


def test_a_spark_save_is_written_by_the_executors_and_committed_per_partition(spark, keel_home):
    import pyarrow.parquet as pq

    engine = DataEngine.from_env()
    frame = spark.range(0, 3000, numPartitions=3).selectExpr(
        "id", "timestamp_seconds(id) + make_interval(0, 0, 0, 0, 0, 0, 0.000001) AS ts")
    version = engine.save("parts", frame, row_group_size=500)
    v = engine.version("parts", version)
    # One Parquet file per partition, as the executors wrote them: nothing went through the driver.
    assert [f.rows for f in v.files] == [1000, 1000, 1000]
    paths = engine.paths("parts")
    assert [os.path.getsize(p) for p in paths] == [f.bytes for f in v.files] and v.rows == 3000
    meta = pq.ParquetFile(paths[0])
    assert meta.metadata.num_row_groups == 2                    # row_group_size reached the writer
    assert meta.schema_arrow.field("ts").type == pa.timestamp("us", tz="UTC")  # INT64 micros, not INT96
    assert engine.load("parts")["ts"].iloc[1] == datetime.datetime(1970, 1, 1, 0, 0, 1, 1,
                                                                   tzinfo=datetime.timezone.utc)
    assert json_field(v.schema, "ts") == "timestamp[us, tz=UTC]"
    # The staging folder is gone: only the committed files remain in the store.
    assert list(keel_home.rglob("*-spark")) == [] and len(list(keel_home.rglob("part-*"))) == 0
    assert engine.save("parts", spark.range(0, 10, numPartitions=2).selectExpr("id", "timestamp_seconds(id) AS ts"),
                       mode="append") == version + 1
    assert engine.version("parts").rows == 3010


def json_field(schema: str, name: str) -> str:
    import json

    return next(f["type"] for f in json.loads(schema)["fields"] if f["name"] == name)


def test_bad_worker_memory_is_a_usage_error():
    from keel.errors import UsageError

    with pytest.raises(UsageError, match="worker_memory '2 gigs'"):
        SparkSettings.from_mapping({"workers": 1, "worker_memory": "2 gigs"})


def test_an_add_on_without_workers_runs_in_the_task():
    assert SparkSettings.from_mapping({}).master == "local[*]"
    assert SparkSettings.from_mapping({"master": "local[2]"}).starts_cluster is False
    assert SparkSettings.from_mapping({"workers": 2}).starts_cluster is True


def test_a_project_job_gets_a_cluster_that_is_stopped_after(keel_home, tmp_path):
    import psutil

    from keel.flow.project import load_project
    from keel.runtime.project import ProjectRunOptions, run_project

    (tmp_path / "keel.yaml").write_text(textwrap.dedent("""
        name: sparky
        addons:
          spark: {workers: 1, worker_cores: 1, worker_memory: 512m}
        jobs:
          - name: etl
            entrypoint: python etl.py
            addons: [spark]
    """))
    (tmp_path / "etl.py").write_text(textwrap.dedent("""
        import os
        from keel import current
        df = current.spark.range(0, 100).selectExpr("id", "id * 2 AS twice")
        print("master", current.spark.sparkContext.master)
        current.data.save("twice", df)
    """))
    result = run_project(load_project(str(tmp_path / "keel.yaml")), ProjectRunOptions(quiet=True))
    from keel import Run

    task = Run(f"sparky/{result.run_id}")["etl"].task
    assert result.ok, task.stderr
    assert "Spark cluster for this job: master spark://127.0.0.1:" in task.stderr
    master = task.stderr.split("master spark://", 1)[1].split(",")[0]
    assert f"master spark://{master}" in task.stdout
    v = DataEngine.from_env().version("twice")
    assert v.rows == 100 and v.lineage == f"sparky/{result.run_id}/etl/{task.id}"
    # The cluster's UI address is kept with the task, and `keel show` prints it.
    from keel.store import Store

    ui = task.stderr.split(", UI ", 1)[1].split()[0]
    links = {link.name: link.url for link in Store.from_env().metadata.links.list("sparky", result.run_id, task.id)}
    assert links["spark_ui"] == ui and links["spark_app_ui"].startswith("http://")
    shown = subprocess.run([sys.executable, "-m", "keel.cli.main", "show", f"sparky/{result.run_id}"],
                           capture_output=True, text=True, timeout=120)
    assert f"Spark UI of sparky/{result.run_id}/etl/{task.id}: {ui}" in shown.stdout, shown.stdout + shown.stderr
    port = master.split(":")[1]
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if any(port in a for a in p.info["cmdline"] or [])]
    assert leftovers == []


def test_a_spark_step_reaches_current_spark_and_the_data_engine(keel_home, tmp_path):
    from keel import Flow
    from keel_testing import run_in_process, write_flow

    path = write_flow(tmp_path, "sparkflow", '''
        from keel import FlowSpec, step, current, spark

        class SparkFlow(FlowSpec):
            @spark(master="local[1]")
            @step
            def start(self):
                self.master = current.spark.sparkContext.master
                current.data.save("squares", current.spark.range(5).selectExpr("id * id AS sq"))
                self.next(self.end)

            @step
            def end(self):
                self.total = int(current.data.sql("SELECT sum(sq) AS s FROM squares")["s"][0])
    ''')
    run_in_process(path)
    run = Flow("SparkFlow").latest_run
    assert run.successful and run["start"].task.data.master == "local[1]" and run.data.total == 30


_OWNER = textwrap.dedent("""
    import time
    from keel.addons.spark import SparkCluster, SparkSettings
    cluster = SparkCluster(SparkSettings(workers=1, worker_cores=1, worker_memory="512m")).start()
    print(" ".join(str(p.pid) for p in cluster._procs), flush=True)
    time.sleep(600)                          # killed here, with the cluster up
""")


def test_the_cluster_dies_with_a_killed_owner(tmp_path):
    import signal
    import time

    import psutil

    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pids = [int(p) for p in owner.stdout.readline().split()]
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait(timeout=30)
    deadline = time.monotonic() + 90   # a JVM on a loaded machine takes a while to go
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, "a Spark JVM outlived the process that started it"
        time.sleep(0.1)
