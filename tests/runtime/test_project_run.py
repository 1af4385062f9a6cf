"""`keel project run` on real projects (tests/projects/): real processes, a real store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.client.core import Run
from keel.store import Store

PROJECTS = Path(__file__).resolve().parents[1] / "projects"
KEEL = str(Path(sys.executable).with_name("keel"))


def copy_project(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(PROJECTS / name, target)
    return target


def keel(*args: str, cwd: Path, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEEL_HOME": str(home)}
    for var in ("KEEL_METADATA_URL", "KEEL_ARTIFACT_URL", "KEEL_RUN_ID", "KEEL_STEP_NAME", "KEEL_TASK_ID"):
        env.pop(var, None)
    return subprocess.run([KEEL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keelhome"
    monkeypatch.setenv("KEEL_HOME", str(path))
    monkeypatch.delenv("KEEL_METADATA_URL", raising=False)
    monkeypatch.delenv("KEEL_ARTIFACT_URL", raising=False)
    return path


def test_pipeline_diamond_parallel_flow_and_a_failing_branch(tmp_path: Path, home: Path) -> None:
    project = copy_project("pipeline", tmp_path)
    result = keel("project", "run", cwd=project, home=home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Run pipeline/1 failed: job(s) flaky failed; skipped: after_flaky" in result.stderr
    assert ("Fix it, then: keel project resume -f keel.yaml 1  (or: keel project run -f keel.yaml --job flaky "
            "--downstream)") in result.stderr

    run = Run("pipeline/1")
    assert run.status == "failed" and run.finished
    assert "ingested" in run.tags                               # current.tag in a script
    steps = {s["step"]: s["status"] for s in Store.from_env().metadata.runs.list_steps("pipeline", 1)}
    assert steps == {"ingest": "done", "clean": "done", "features": "done", "train": "done", "report": "done",
                     "flaky": "failed", "after_flaky": "skipped"}
    # a task per job instance, with the instance as its index, and the job's own output
    features = list(run["features"])
    assert [t.index for t in features] == [0, 1, 2]
    assert sorted(t.stdout for t in features) == [
        f"features: instance {i} of 3, current.instance={i}\n" for i in range(3)]
    ingest = run["ingest"].task
    assert ingest.stdout == f"ingest: 5 rows for pipeline/1/ingest/{ingest.id} (run 1, job ingest)\n"
    assert [v for _, v, _ in ingest.metrics["rows_read"]] == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert [s for s, _, _ in ingest.metrics["rows_read"]] == [0, 1, 2, 3, 4]
    # dependency order: every task of a job started after the tasks it needs had finished
    for job, needs in {"clean": ["ingest"], "features": ["ingest"], "train": ["clean", "features"],
                       "report": ["train"]}.items():
        first = min(t.started_at for t in run[job])
        assert all(t.finished_at <= first for n in needs for t in run[n]), job
        assert set(run[job].task._record.parents) == {t.id for n in needs for t in run[n]}
    # the flow job made a flow run of its own, linked both ways
    flow_run = run["train"].task.data.flow_run
    assert flow_run == "TrainFlow/1"
    train = Run(flow_run)
    assert train.successful and f"project:pipeline/1" in train.tags
    assert train.params == {"alpha": 0.25, "label": "project"}
    assert train.data.score == 1.0 and train.data.features == sorted(
        f"pipeline/1/features/{t.id}" for t in features)
    # the failing job: retried once, its stderr kept, its dependant never started
    flaky = run["flaky"].task
    assert flaky.status == "failed" and flaky.attempts == 2
    assert flaky.stderr == "flaky: the source is down\n" * 2
    assert flaky.stdout == "flaky: attempt 0\nflaky: attempt 1\n"
    assert flaky.exception["message"] == "job 'flaky' exited with status 3"
    assert len(run["after_flaky"]) == 0
    assert not (project / "out" / "after_flaky-0.txt").exists()

    # the readers show it like a flow run
    shown = keel("show", "pipeline/1", cwd=project, home=home)
    assert shown.returncode == 0 and "features" in shown.stdout and "3 succeeded" in shown.stdout
    logs = keel("logs", "pipeline/1/features", cwd=project, home=home)
    assert logs.returncode == 0 and logs.stdout.count("features: instance") == 3
    runs = json.loads(keel("runs", "--json", cwd=project, home=home).stdout)
    assert {r["pathspec"]: r["status"] for r in runs} == {"pipeline/1": "failed", "TrainFlow/1": "succeeded"}


def test_one_job_with_and_without_its_dependencies(tmp_path: Path, home: Path) -> None:
    project = copy_project("pipeline", tmp_path)
    alone = keel("project", "run", "--job", "ingest", cwd=project, home=home)
    assert alone.returncode == 0, alone.stderr
    assert [s["step"] for s in Store.from_env().metadata.runs.list_steps("pipeline", 1)] == ["ingest"]

    with_deps = keel("project", "run", "--job", "train", "--with-deps", cwd=project, home=home)
    assert with_deps.returncode == 0, with_deps.stderr
    steps = [s["step"] for s in Store.from_env().metadata.runs.list_steps("pipeline", 2)]
    assert steps == ["ingest", "clean", "features", "train"]
    assert Run("pipeline/2").params == {"jobs": steps}

    unknown = keel("project", "run", "--job", "trian", cwd=project, home=home)
    assert unknown.returncode == 2
    assert unknown.stderr == ("keel: --job trian: the project pipeline has no job 'trian'. Did you mean "
                              "'train'? Jobs are: ingest, clean, features, train, report, flaky, after_flaky\n")


def test_concurrency_budget_and_timeout(tmp_path: Path, home: Path) -> None:
    project = copy_project("timing", tmp_path)
    spec = project / "keel.yaml"
    spec.write_text(spec.read_text().replace("${CPUS}", str(os.cpu_count())))
    result = keel("project", "run", cwd=project, home=home)
    assert result.returncode == 1, result.stdout + result.stderr
    run = Run("timing/1")
    # independent jobs ran at the same time (each waited for the other)
    assert run["left"].task.stdout == "left met right\n" and run["right"].task.successful
    # two jobs that each need every core did not overlap
    (a0, a1), (b0, b1) = ([float(x) for x in (project / f"{j}.span").read_text().split()]
                          for j in ("big_a", "big_b"))
    assert a1 <= b0 or b1 <= a0
    # the timeout killed the job's process group, well before its 60 s sleep
    slow = run["slow"].task
    assert slow.status == "failed" and slow.stdout == "started\n"
    assert slow.exception["type"] == "TimeoutError"
    assert slow.exception["message"] == "job 'slow' ran longer than its timeout of 1s"
    assert (slow.finished_at - slow.started_at).total_seconds() < 30  # slack for a loaded machine


def test_a_job_that_asks_for_more_than_the_machine_is_refused(tmp_path: Path, home: Path) -> None:
    (tmp_path / "keel.yaml").write_text("name: greedy\njobs:\n  - name: big\n    entrypoint: 'true'\n"
                                        "    resources: {cpu: 4096}\n")
    result = keel("project", "run", cwd=tmp_path, home=home)
    assert result.returncode == 1
    assert result.stderr == (f"keel: 1 problem(s) in the project file:\nkeel.yaml:5: job 'big' asks for "
                             f"resources: cpu: 4096 but this machine has {os.cpu_count()} cores; lower it\n")
    assert not (home / "metadata.db").exists() or Store.from_env().metadata.runs.list_runs("greedy") == []


def test_sigterm_stops_the_jobs_and_records_the_run_as_interrupted(tmp_path: Path, home: Path) -> None:
    (tmp_path / "keel.yaml").write_text(
        "name: stopme\njobs:\n  - name: wait\n    entrypoint: echo waiting; exec sleep 60\n"
        "  - name: later\n    entrypoint: echo never\n    after: [wait]\n")
    env = {**os.environ, "KEEL_HOME": str(home)}
    proc = subprocess.Popen([KEEL, "project", "run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        log = home / "logs" / "stopme" / "1" / "wait" / "1.stdout"
        deadline = time.time() + 120  # generous: a loaded machine is slow to start processes
        while not (log.exists() and log.read_text() == "waiting\n"):
            assert time.time() < deadline and proc.poll() is None, "the job never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    run = Run("stopme/1")
    assert run.status == "interrupted"
    assert run["wait"].task.status == "interrupted" and len(run["later"]) == 0
