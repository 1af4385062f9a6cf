"""Metric logging from tasks: throughput, nothing lost when a task dies, system metrics."""

from __future__ import annotations

import pytest

from keel_testing import run_cli, run_in_process, write_flow
from keel import Flow

CRASHER = '''
    import os, signal, time
    from keel import FlowSpec, Parameter, current, parallel_map, step

    class Crasher(FlowSpec):
        how = Parameter("how", default="ok")
        n = Parameter("n", default=100000)

        @step
        def start(self):
            t = time.perf_counter()
            for i in range(self.n):
                current.log_metric("x", i, step=i)
            self.rate = self.n / (time.perf_counter() - t)
            current.log_metrics({"a": 1.5, "b": 2.5})
            if self.how == "exit":
                os._exit(3)
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.how == "workers":
                def work(i):
                    current.log_metric("w", i, step=i)
                    return i
                parallel_map(work, range(20), max_parallel=2)
            self.next(self.end)

        @step
        def end(self):
            pass
'''


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_points_logged_before_a_crash_are_kept(keel_home, tmp_path, how):
    path = write_flow(tmp_path, "crasher", CRASHER)
    result = run_in_process(path, {"how": how})
    assert result.status == "failed"
    run = Flow("Crasher").latest_run
    xs = run.metrics["x"]
    assert len(xs) == 100_000  # every point, though the task died right after logging them
    assert [p[0] for p in xs[:3]] == [0, 1, 2] and xs[-1][:2] == (99_999, 99_999.0)
    assert run.metrics["a"][0][1] == 1.5 and run.metrics["b"][0][1] == 2.5
    assert "sys.rss_mb" in run.metrics  # the sampler's first sample survives too


def test_a_hundred_thousand_points_and_forked_workers(keel_home, tmp_path):
    """Every point is kept; the rate (50,000 points/s and more) is measured by benchmarks/tracking_bench.py."""
    path = write_flow(tmp_path, "crasher", CRASHER)
    assert run_in_process(path, {"how": "workers"}).status == "succeeded"
    run = Flow("Crasher").latest_run
    assert len(run.metrics["x"]) == 100_000
    assert sorted(p[0] for p in run.metrics["w"]) == list(range(20))  # logged by parallel_map workers


@pytest.mark.serial  # a wall-time bound that is part of the behaviour: run alone
def test_system_metrics_sampled_and_shown(keel_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_SYSTEM_METRICS_EVERY", "0.1")
    path = write_flow(tmp_path, "hog", '''
        import time
        from keel import FlowSpec, step

        class Hog(FlowSpec):
            @step
            def start(self):
                block = bytearray(120 * 2**20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                while time.process_time() < 0.6:  # CPU time, so a busy machine only makes it longer
                    pass
                del block
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    run = Flow("Hog").latest_run
    task = run["start"].task
    m = task.metrics
    assert len(m["sys.rss_mb"]) >= 4  # sampled while it ran, not only at the ends
    assert max(v for _, v, _ in m["sys.cpu_percent"]) > 5  # busy, however loaded the machine is
    peak = m["sys.peak_rss_mb"][0][1]
    assert peak >= 120
    assert m["sys.cpu_time_s"][0][1] >= 0.4
    proc = run_cli("show", "Hog/1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("step"))
    assert "cpu" in header and "peak mem" in header
    start_row = next(line for line in lines if line.lstrip().startswith("start "))
    assert f"{peak:.0f} MB" in start_row
    assert "sys.rss_mb" not in proc.stdout  # raw series stay out of the summary


def test_system_metrics_can_be_turned_off(keel_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_SYSTEM_METRICS", "0")
    path = write_flow(tmp_path, "crasher", CRASHER)
    assert run_in_process(path, {"n": 10}).status == "succeeded"
    assert sorted(Flow("Crasher").latest_run.metrics) == ["a", "b", "x"]


def test_spool_grows_reopens_and_reads_forked_writers(tmp_path):
    import os

    from keel.runtime.current import MetricSpool

    path = str(tmp_path / "t.metrics")
    spool = MetricSpool(path)
    for i in range(10_000):  # 270 KB: past the first 64 KB, so the file is remapped several times
        spool.add("loss" if i % 2 else "acc", float(i), i if i % 3 else None)
    spool.close()
    spool.add("late", 1.0, None)  # after close: reopened, appended after the last record
    spool.close()
    pid = os.fork()
    if pid == 0:
        spool._forked()
        spool.add("child", 7.0, 1)
        os._exit(0)
    os.waitpid(pid, 0)
    points = MetricSpool.read(path)
    assert len(points) == 10_001 and points[-1][0] == "late"
    assert points[5] == ("loss", 5, 5.0, points[5][3]) and points[0][:3] == ("acc", None, 0.0)
    assert MetricSpool.files(path) == [path, f"{path}.{pid}"]
    assert MetricSpool.read_all(path)[-1][:3] == ("child", 1, 7.0)
    with open(path, "ab") as fh:  # a torn record at the end is ignored, not misread
        fh.write(b"\x01\x02\x03")
    assert len(MetricSpool.read(path)) == 10_001


def test_a_task_that_logs_nothing_writes_no_spool_and_still_records_its_system_metrics(keel_home, tmp_path,
                                                                                       monkeypatch):
    # The last system-metric points travel with the task's result, not through a spool file.
    import os

    import keel.runtime.executors.local as local

    path = write_flow(tmp_path, "quiet", '''
        from keel import FlowSpec, step

        class Quiet(FlowSpec):
            @step
            def start(self):
                self.x = 1
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    seen = tmp_path / "seen"
    seen.mkdir()
    real = local.run_task

    def run_task(spec, flow_cls, store):  # runs in the forked task
        result = real(spec, flow_cls, store)
        (seen / spec.step).write_text("spool" if os.path.exists(spec.metrics_path) else "none")
        return result

    monkeypatch.setenv("KEEL_FORK_SERVER", "0")  # tasks forked from this process run the wrapper
    monkeypatch.setattr(local, "run_task", run_task)
    assert run_in_process(path).status == "succeeded"
    assert {p.name: p.read_text() for p in seen.iterdir()} == {"start": "none", "end": "none"}
    for step in ("start", "end"):
        m = Flow("Quiet").latest_run[step].task.metrics
        assert {"sys.cpu_percent", "sys.rss_mb", "sys.peak_rss_mb", "sys.cpu_time_s"} <= set(m), (step, m)
        assert len(m["sys.peak_rss_mb"]) == 1 and m["sys.peak_rss_mb"][0][1] > 0
