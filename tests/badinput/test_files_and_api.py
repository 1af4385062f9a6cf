"""Bad input through flow files, keel.yaml and the Python API: clear errors, never a traceback."""

from __future__ import annotations

import datetime as dt
import textwrap
import pytest

from keel.errors import DefinitionError, MetadataError, UsageError
from keel_testing import FLOWS, assert_clean_error, run_cli, write_flow

HUGE = 99999999999999999999


def test_the_client_refuses_an_id_above_2_63(one_run, monkeypatch):
    from keel import Run
    from keel.store import Store

    monkeypatch.setenv("KEEL_HOME", str(one_run))
    with pytest.raises(UsageError, match="out of range"):
        Run(f"LinearFlow/{HUGE}")
    assert Store.from_env().metadata.runs.get_run("LinearFlow", HUGE) is None  # the store: no such run, no OverflowError


def test_a_flow_file_named_like_a_stdlib_module_is_refused(tmp_path, keel_home):
    path = tmp_path / "json.py"
    path.write_text((FLOWS / "linear.py").read_text() + '\nif __name__ == "__main__":\n    LinearFlow()\n')
    for args in (("run", str(path)), (str(path), "run")):
        proc = run_cli(*args, cwd=tmp_path)
        assert_clean_error(proc, 2, "json.py hides Python's standard module 'json'", "rename")
    assert not (keel_home / "metadata.db").exists()  # refused before anything was stored


@pytest.mark.parametrize("neighbour", ["random.py", "tempfile.py", "json/__init__.py"])
def test_a_module_beside_the_flow_named_like_a_stdlib_module_is_refused(tmp_path, keel_home, neighbour):
    """random.py beside the flow would replace the standard module for every later import (tempfile's too)."""
    path = tmp_path / "flow.py"
    path.write_text((FLOWS / "linear.py").read_text() + '\nif __name__ == "__main__":\n    LinearFlow()\n')
    (tmp_path / neighbour).parent.mkdir(exist_ok=True)
    (tmp_path / neighbour).write_text("VALUE = 1  # the user's helper\n")
    shown = neighbour.replace("/__init__.py", "/")
    stem = shown.rstrip("/").removesuffix(".py")
    for args in (("run", str(path)), (str(path), "run")):
        proc = run_cli(*args, cwd=tmp_path)
        assert_clean_error(proc, 2, f"{shown} beside flow.py hides Python's standard module", f"{stem}_utils.py")
    assert not (keel_home / "metadata.db").exists()


def test_a_project_flow_job_with_a_shadowing_neighbour_is_refused_with_its_line(tmp_path, keel_home):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "train.py").write_text((FLOWS / "linear.py").read_text())
    (tmp_path / "flows" / "random.py").write_text("VALUE = 1\n")
    (tmp_path / "keel.yaml").write_text("name: p\njobs:\n  - name: train\n    flow: flows/train.py\n")
    proc = run_cli("project", "validate", cwd=tmp_path)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
    assert "random.py beside train.py hides Python's standard module" in proc.stderr and "keel.yaml:4" in proc.stderr


@pytest.mark.parametrize("call, words", [
    ('current.log_metric("", 1.0)', "a metric name is a non-empty string"),
    ('current.log_metric("a\\nb", 1.0)', "a metric name is a non-empty string"),
    ('current.log_metric("loss", 1.0, step=2**64)', "the step is out of range"),
    ('current.log_metric("loss", 1.0, step="x")', "the step must be an integer"),
])
def test_a_bad_metric_fails_the_step_with_a_message(tmp_path, keel_home, call, words):
    path = write_flow(tmp_path, "metric_flow", f"""
        from keel import FlowSpec, current, step

        class MetricFlow(FlowSpec):
            @step
            def start(self):
                current.log_metric("ok", 1.0, step=1)
                {call}
                self.next(self.end)

            @step
            def end(self):
                pass
        """)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert words in proc.stderr + proc.stdout
    assert "keel resume" in proc.stderr + proc.stdout


def test_memory_means_the_same_in_a_decorator_and_in_keel_yaml():
    from keel import resources
    from keel.flow.project import parse_size

    def body(self):  # pragma: no cover - never run
        pass

    deco = resources(memory="512M", disk="2G")(body).__dict__["_keel_decorators"][0]
    assert deco.memory == parse_size("512M") == 512.0 and deco.disk == parse_size("2G") == 2048.0
    with pytest.raises(DefinitionError, match=r"@resources\(memory='lots'\)"):
        resources(memory="lots")


def test_a_gpu_step_without_a_gpu_is_refused_before_the_run(tmp_path, keel_home, monkeypatch):
    path = write_flow(tmp_path, "gpu_flow", """
        from keel import FlowSpec, resources, step

        class GpuFlow(FlowSpec):
            @resources(gpu=1)
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """)
    proc = run_cli("run", str(path), cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert_clean_error(proc, 1, "gpu_flow.py:4", "asks for @resources(gpu=1) but this machine has no GPU")
    assert "GpuFlow" not in run_cli("runs", cwd=tmp_path).stdout  # nothing ran, nothing stored


@pytest.mark.parametrize("resources, words", [
    ("{cpu: 100000}", "cpu: 100000 but this machine has"),
    ("{memory: 9999T}", "MB but this machine has"),
])
def test_project_validate_refuses_what_project_run_would(tmp_path, keel_home, resources, words):
    (tmp_path / "keel.yaml").write_text(textwrap.dedent(f"""
        name: big
        jobs:
          - name: train
            entrypoint: python -c "print(1)"
            resources: {resources}
        """))
    for args in (("project", "validate"), ("project", "run")):
        proc = run_cli(*args, cwd=tmp_path)
        assert_clean_error(proc, 1, "keel.yaml:6", words)


def test_the_scheduler_with_nothing_scheduled_is_a_usage_error(tmp_path, keel_home):
    (tmp_path / "keel.yaml").write_text("name: quiet\njobs:\n  - name: a\n    entrypoint: echo hi\n")
    assert_clean_error(run_cli("scheduler", cwd=tmp_path, timeout=60), 2, "no scheduled jobs")


@pytest.mark.parametrize("offset", [-1.0, -0.5, -0.25, -0.001, 0.0, 0.001, 0.5, 59.9])
def test_cron_never_fires_before_the_scheduled_instant(offset):
    from keel.schedule.cron import cron_prev

    midnight = dt.datetime(2026, 12, 1).astimezone().timestamp()
    fire = cron_prev("0 0 * * *", midnight + offset)
    assert fire <= midnight + offset
    assert fire == (midnight if offset >= 0 else midnight - 86400)


def test_schedule_times_are_shown_with_their_time_zone():
    from keel.schedule.cron import when

    zone = dt.datetime(2026, 12, 1).astimezone().strftime("%Z")
    assert when(dt.datetime(2026, 12, 1).astimezone().timestamp()) == f"2026-12-01 00:00:00 {zone}"


def test_a_database_url_without_its_driver_names_the_extra(tmp_path, monkeypatch):
    import sys

    from keel.store.sql import Database

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if keel[postgres] were not installed
    with pytest.raises(MetadataError, match=r"pip install 'keel\[postgres\]'"):
        Database("postgresql://u@127.0.0.1:1/x")


def test_a_data_export_to_mysql_without_its_driver_names_the_extra(tmp_path, monkeypatch, keel_home):
    import sys

    pd = pytest.importorskip("pandas")
    import keel.data

    monkeypatch.setitem(sys.modules, "pymysql", None)
    keel.data.save("t", pd.DataFrame({"a": [1, 2]}))
    with pytest.raises(UsageError, match=r"pip install 'keel\[mysql\]'"):
        keel.data.export("t", "mysql+pymysql://u@127.0.0.1:1/x")


def test_a_flow_or_step_name_too_long_for_a_folder_is_a_graph_error(tmp_path):
    from keel.errors import GraphError
    from keel.flow.graph import FlowGraph
    from keel_testing import load_flow

    long = "s" * 250
    path = write_flow(tmp_path, "longnames", f"""
        from keel import FlowSpec, step

        class F{long}(FlowSpec):
            @step
            def start(self):
                self.next(self.{long})

            @step
            def {long}(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """)
    with pytest.raises(GraphError) as exc:
        FlowGraph(load_flow(path)).check()
    assert [i.line for i in exc.value.issues] == [3, 9]
    assert all("at most 200 bytes" in i.message and long not in i.message for i in exc.value.issues)


@pytest.mark.parametrize("task", ["x", "-1", HUGE, "1/2", 99])
def test_a_step_asked_for_a_task_it_does_not_have_says_which_it_has(one_run, monkeypatch, task):
    from keel import Run

    monkeypatch.setenv("KEEL_HOME", str(one_run))
    step = Run("LinearFlow/1")["start"]
    with pytest.raises(KeyError, match=r"step LinearFlow/1/start has no task .*; its tasks are: 1"):
        step[task]
    assert step[str(step.task.id)].id == step.task.id
