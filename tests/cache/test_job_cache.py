"""Caching of project jobs through real `keel project run` runs: keel.yaml and the job's files
are rewritten between runs and each case asserts which job instances came from the cache."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from keel_testing import edit_file, run_cli

YAML = '''
name: jobs
jobs:
  - name: ingest
    entrypoint: python ingest.py data.csv
    cache: true
  - name: train
    entrypoint: python train.py
    after: [ingest]
    parallelism: 2
    cache: true
'''

INGEST = '''
import sys
# read the raw data and write what train needs
rows = open(sys.argv[1]).read().split()
open("clean.txt", "w").write(" ".join(r.upper() for r in rows))
print("ingested", len(rows))
'''

TRAIN = '''
import os
from helper import score
print("trained", score(os.environ["KEEL_INSTANCE"]))
'''

HELPER = '''
def score(x):
    return int(x) * 2
'''

FLOW_YAML = '''
name: flowjobs
jobs:
  - name: train
    flow: train_flow.py
    params: {alpha: 0.5}
    cache: true
'''

FLOW = '''
from keel import FlowSpec, Parameter, step


class Trainer(FlowSpec):
    alpha = Parameter("alpha", default=0.1)

    @step
    def start(self):
        self.model = self.alpha * 2
        self.next(self.end)

    @step
    def end(self):
        print("model", self.model)


if __name__ == "__main__":
    Trainer()
'''


def write(folder: Path, **files: str) -> None:
    for name, text in files.items():
        edit_file(folder / name.replace("_dot_", "."), textwrap.dedent(text).lstrip())


@pytest.fixture
def project(keel_home: Path, tmp_path: Path) -> Path:
    write(tmp_path, keel_dot_yaml=YAML, ingest_dot_py=INGEST, train_dot_py=TRAIN, helper_dot_py=HELPER,
          data_dot_csv="a\nb\nc\n")
    return tmp_path


def run(folder: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, list[bool]]:
    """Run the project; which instances of each job were taken from the cache."""
    proc = run_cli("project", "run", "-f", str(folder / "keel.yaml"), *args, cwd=folder, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from keel import Flow

    r = Flow(_name(folder)).latest_run
    return {s.id: [t.cached for t in s] for s in r}


def _name(folder: Path) -> str:
    return "flowjobs" if "flowjobs" in (folder / "keel.yaml").read_text() else "jobs"


def test_a_second_identical_run_takes_every_cached_job_from_the_cache(project):
    assert run(project) == {"ingest": [False], "train": [False, False]}
    assert run(project) == {"ingest": [True], "train": [True, True]}
    assert (project / "clean.txt").read_text() == "A B C"


def test_a_cached_job_names_its_origin_in_the_client_and_in_show(project):
    run(project)
    run(project)
    from keel import Flow

    r = Flow("jobs").latest_run
    task = r["ingest"].task
    assert task.cached and task.origin == f"jobs/{r.id - 1}/ingest/{task.origin.split('/')[-1]}"
    assert task.successful
    shown = run_cli("show", f"jobs/{r.id}", cwd=project, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert f"(from jobs/{r.id - 1})" in shown.stdout


def test_changing_the_script_misses_it_and_the_jobs_after_it(project):
    run(project)
    write(project, ingest_dot_py=INGEST.replace("r.upper()", "r.lower()"))
    assert run(project) == {"ingest": [False], "train": [False, False]}
    assert (project / "clean.txt").read_text() == "a b c"


def test_comments_and_formatting_of_a_python_script_do_not_count(project):
    run(project)
    write(project, ingest_dot_py=INGEST.replace("# read the raw data and write what train needs", "# reads  the data\n\n").replace("rows = ", "rows  =  "))
    assert run(project) == {"ingest": [True], "train": [True, True]}


def test_a_changed_file_the_script_reads_misses_it_and_the_jobs_after_it(project):
    run(project)
    write(project, data_dot_csv="a\nb\nz\n")
    assert run(project) == {"ingest": [False], "train": [False, False]}
    assert (project / "clean.txt").read_text() == "A B Z"
    assert run(project) == {"ingest": [True], "train": [True, True]}


def test_a_changed_module_the_script_imports_misses_it(project):
    run(project)
    write(project, helper_dot_py=HELPER.replace("* 2", "* 3"))
    assert run(project) == {"ingest": [True], "train": [False, False]}


def test_an_upstream_job_without_caching_makes_its_dependants_miss(project):
    write(project, keel_dot_yaml=YAML.replace("data.csv\n    cache: true", "data.csv"))
    assert run(project) == {"ingest": [False], "train": [False, False]}
    assert run(project) == {"ingest": [False], "train": [False, False]}


def test_a_changed_instance_count_or_env_misses(project):
    run(project)
    write(project, keel_dot_yaml=YAML.replace("parallelism: 2", "parallelism: 3"))
    assert run(project) == {"ingest": [True], "train": [False, False, False]}
    write(project, keel_dot_yaml=YAML.replace("data.csv\n", "data.csv\n    env: {MODE: fast}\n"))
    assert run(project)["ingest"] == [False]


def test_resources_do_not_count(project):
    run(project)
    write(project, keel_dot_yaml=YAML.replace("parallelism: 2", "parallelism: 2\n    resources: {cpu: 0.5}"))
    assert run(project) == {"ingest": [True], "train": [True, True]}


def test_no_cache_and_keel_cache_off_run_every_job(project):
    run(project)
    assert run(project, "--no-cache") == {"ingest": [False], "train": [False, False]}
    assert run(project, env={"KEEL_CACHE": "off"}) == {"ingest": [False], "train": [False, False]}


def test_run_cache_caches_jobs_without_cache_true(project):
    write(project, keel_dot_yaml=YAML.replace("    cache: true\n", ""))
    assert run(project) == {"ingest": [False], "train": [False, False]}
    run(project, "--cache")
    assert run(project, "--cache") == {"ingest": [True], "train": [True, True]}
    assert run(project) == {"ingest": [False], "train": [False, False]}


def test_a_flow_job_hit_reuses_its_flow_run(keel_home, tmp_path):
    write(tmp_path, keel_dot_yaml=FLOW_YAML, train_flow_dot_py=FLOW)
    assert run(tmp_path) == {"train": [False]}
    assert run(tmp_path) == {"train": [True]}
    from keel import Flow

    runs = Flow("flowjobs").runs()
    first, second = sorted(runs, key=lambda r: r.id)
    assert second["train"].task.data.flow_run == first["train"].task.data.flow_run == "Trainer/1"
    assert len(list(Flow("Trainer").runs())) == 1
    write(tmp_path, keel_dot_yaml=FLOW_YAML.replace("0.5", "0.7"))
    assert run(tmp_path) == {"train": [False]}
    assert len(list(Flow("Trainer").runs())) == 2


def test_explain_names_the_part_of_a_job_key_that_changed(project):
    run(project)
    write(project, data_dot_csv="q\n")
    write(project, ingest_dot_py=INGEST.replace("r.upper()", "r.title()"))
    run(project)
    from keel import Flow

    r = Flow("jobs").latest_run
    proc = run_cli("cache", "explain", f"jobs/{r.id}/ingest", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "changed files" in proc.stdout


def test_cache_must_be_true_or_false(project):
    write(project, keel_dot_yaml=YAML.replace("cache: true", "cache: sometimes", 1))
    proc = run_cli("project", "validate", "-f", str(project / "keel.yaml"), cwd=project)
    assert proc.returncode != 0
    assert "keel.yaml:5" in proc.stdout + proc.stderr and "cache" in proc.stdout + proc.stderr
