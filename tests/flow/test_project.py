"""keel.yaml checks: one broken file per rule under tests/projects/broken, exact messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.flow.loader import load_flow_file
from keel.errors import ProjectError
from keel.flow.project import load_project, parse_duration, parse_size

BROKEN = Path(__file__).resolve().parents[1] / "projects" / "broken"
PIPELINE = Path(__file__).resolve().parents[1] / "projects" / "pipeline"
KEEL = str(Path(sys.executable).with_name("keel"))


def problems(name: str) -> list[str]:
    with pytest.raises(ProjectError) as info:
        load_project(name, flow_loader=load_flow_file)
    return [str(i) for i in info.value.issues]


@pytest.fixture(autouse=True)
def _in_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)


def test_unknown_keys_suggest_the_nearest_valid_key() -> None:
    assert problems("unknown_key.yaml") == [
        "unknown_key.yaml:7: job 'train': unknown key 'afterr'. Did you mean 'after'? Valid keys are: name, "
        "entrypoint, flow, params, after, schedule, overlap, parallelism, resources, retries, timeout, env, addons, cache",
        "unknown_key.yaml:8: job 'train': resources: unknown key 'gpus'. Valid keys are: cpu, memory",
    ]


def test_wrong_types_each_on_its_line() -> None:
    assert problems("wrong_type.yaml") == [
        "wrong_type.yaml:5: job 'train': parallelism must be a whole number, got 'three'",
        "wrong_type.yaml:6: job 'train': retries must be at least 0, got -1",
        "wrong_type.yaml:7: job 'train': resources.memory must be a size such as 512M or 2G "
        "(K, M, G or T; a plain number is MB), got '2Q'",
        "wrong_type.yaml:8: job 'train': timeout must be a duration such as 90s, 30m or 2h, got 'soon'",
        "wrong_type.yaml:9: job 'train': overlap must be true or false, got 'maybe'",
    ]


def test_unknown_job_in_after() -> None:
    assert problems("unknown_after.yaml") == [
        "unknown_after.yaml:7: job 'train': after: names 'ingset', but there is no job 'ingset'. "
        "Did you mean 'ingest'? Jobs are: ingest, train",
    ]


def test_a_cycle_is_named() -> None:
    assert problems("cycle.yaml") == [
        "cycle.yaml:5: the jobs form a dependency cycle: ingest -> train -> report -> ingest; "
        "remove one of these after: entries",
    ]


def test_bad_cron_expressions() -> None:
    assert problems("bad_cron.yaml") == [
        "bad_cron.yaml:5: job 'hourly': schedule '61 * * * *' is not a valid cron expression: "
        "[61 * * * *] is not acceptable, out of range. Example: '*/15 * * * *' every 15 minutes",
        "bad_cron.yaml:8: job 'short': schedule '* * *' is not a cron expression: it needs five fields "
        "(minute hour day-of-month month day-of-week), e.g. '0 * * * *' for every hour; it has 3",
    ]


def test_missing_flow_file() -> None:
    assert problems("missing_flow.yaml") == [
        f"missing_flow.yaml:4: job 'train': flow file 'flows/trian.py' does not exist (looked for "
        f"{BROKEN}/flows/trian.py); give its path from the project folder",
    ]


def test_flow_with_graph_errors_and_unknown_params() -> None:
    assert problems("bad_flow.yaml") == [
        "bad_flow.yaml:4: job 'train': flow flows/no_end.py is invalid: flows/no_end.py:4: the flow has no "
        "'end' step. Add a @step method named end that does not call self.next: the run finishes there.",
        "bad_flow.yaml:4: job 'train': flow flows/no_end.py is invalid: flows/no_end.py:10: step 'finish' does "
        "not call self.next(...). End every step except 'end' with self.next(self.<next step>).",
        "bad_flow.yaml:7: job 'tune': params: the flow Good has no parameter 'alpah'. Did you mean 'alpha'? "
        "Its parameters are: alpha",
    ]


def test_job_shapes_addons_and_every_problem_at_once() -> None:
    assert problems("job_shape.yaml") == [
        "job_shape.yaml:4: addons: unknown key 'kafka'. Valid keys are: spark, queue",
        "job_shape.yaml:6: job 'nothing' has neither entrypoint: (a shell command) nor flow: (a flow file); "
        "give one of them",
        "job_shape.yaml:10: job 'both' has both entrypoint: and flow:; give only one of them",
        "job_shape.yaml:11: job 'both' is defined twice; job names must be unique",
        "job_shape.yaml:15: job 'sparky': unknown add-on 'sprak'. Did you mean 'spark'? Add-ons are: queue, spark",
        "job_shape.yaml:16: job #5: missing key 'name'",
    ]


def test_not_yaml() -> None:
    assert problems("not_yaml.yaml") == [
        "not_yaml.yaml:5: this is not valid YAML: while parsing a block collection did not find expected '-' "
        "indicator; check the indentation and the colons near this line",
    ]


def test_a_valid_project_and_its_order() -> None:
    project = load_project(str(PIPELINE / "keel.yaml"), flow_loader=load_flow_file)
    assert project.name == "pipeline"
    assert project.order() == ["ingest", "clean", "features", "train", "report", "flaky", "after_flaky"]
    assert project.upstream("train") == ["ingest", "clean", "features", "train"]
    assert project.downstream("clean") == ["clean", "train", "report"]
    assert project.flow_names == {"train": "TrainFlow"}
    features = project.jobs["features"]
    assert (features.parallelism, features.resources.cpu, features.resources.memory) == (3, 0.5, 64.0)
    assert project.jobs["ingest"].env == {"ROWS": "5"}
    assert project.jobs["features"].after == ["ingest"]  # a single name is a list of one


def test_sizes_and_durations() -> None:
    assert [parse_size(v) for v in ("512M", "2G", "1.5GB", "1024K", 300)] == [512, 2048, 1536, 1, 300]
    assert [parse_duration(v) for v in ("90s", "30m", "2h", "1h30m", 45)] == [90, 1800, 7200, 5400, 45]
    for bad in ("2Q", "-1G", True):
        with pytest.raises(ValueError):
            parse_size(bad)
    for bad in ("soon", "0s", "5 d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    ok = subprocess.run([KEEL, "project", "validate", "-f", str(PIPELINE / "keel.yaml")], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.endswith("project pipeline is valid (7 job(s): ingest, clean, features, train, report, "
                              "flaky, after_flaky).\n")
    bad = subprocess.run([KEEL, "project", "validate", "-f", "cycle.yaml"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.startswith("keel: 1 problem(s) in the project file:\ncycle.yaml:5: the jobs form")
    missing = subprocess.run([KEEL, "project", "validate"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == (f"keel: no project file keel.yaml in {tmp_path}; create one (see `keel project "
                              f"--help`) or give its path with -f PATH\n")
    assert os.path.isdir(BROKEN)
