"""Pathological project files: alias bombs refused quickly; huge projects validate with a short message."""

from __future__ import annotations

import time

import pytest
from keel_testing import run_cli

from keel.errors import ProjectError
from keel.flow.project import load_project

LAUGHS = """name: lol
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
jobs:
  - name: ingest
    entrypoint: echo hi
    params: *i
"""


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "keel.yaml"
    path.write_text(LAUGHS)
    started = time.process_time()   # CPU time: other processes on a loaded machine do not count
    with pytest.raises(ProjectError, match="aliases"):
        load_project(str(path))
    assert time.process_time() - started < 5


def test_an_alias_bomb_through_the_cli(tmp_path):
    (tmp_path / "keel.yaml").write_text(LAUGHS)
    for args in (("project", "validate"), ("project", "run")):
        done = run_cli(*args, cwd=tmp_path, timeout=60)
        assert done.returncode in (1, 2) and "aliases" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "keel.yaml"
    path.write_text("name: loop\njobs: &j\n  - name: a\n    entrypoint: echo\n    params: {x: *j}\n")
    with pytest.raises(ProjectError) as exc:
        load_project(str(path))
    assert "Traceback" not in str(exc.value)


def test_thousands_of_bad_jobs_give_a_short_message(tmp_path):
    jobs = "".join(f"  - name: job{i}\n    entrypont: echo {i}\n" for i in range(2_000))
    (tmp_path / "keel.yaml").write_text("name: huge\njobs:\n" + jobs)
    started = time.monotonic()
    done = run_cli("project", "validate", cwd=tmp_path, timeout=240)
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr
    assert "more like these" in done.stderr
    assert len(done.stderr.splitlines()) < 80
    assert time.monotonic() - started < 240


def _huge(tmp_path, job: str, count: int = 20_000) -> str:
    path = tmp_path / "keel.yaml"
    path.write_text("name: huge\njobs:\n" + "".join(job.format(i=i, next=i + 1) for i in range(count)))
    return str(path)


def test_thousands_of_bad_jobs_give_a_short_message_with_lines(tmp_path):
    path = _huge(tmp_path, "  - name: job{i}\n    entrypont: echo {i}\n", 5_000)
    with pytest.raises(ProjectError) as exc:
        load_project(path)
    lines = str(exc.value).splitlines()
    assert len(exc.value.issues) == 10_000 and len(lines) == 52
    assert lines[1].startswith(f"{path}:3: job 'job0' has neither entrypoint")
    assert lines[-1] == "... and 9,950 more like these (fix these first, then check again)"


def test_a_job_that_names_an_unknown_job_among_thousands_lists_a_few(tmp_path):
    path = _huge(tmp_path, "  - name: job{i}\n    entrypoint: echo\n    after: [nojob{i}]\n", 5_000)
    with pytest.raises(ProjectError) as exc:
        load_project(path)
    first = exc.value.issues[0].message
    assert "there is no job 'nojob0'" in first and "job19 … and 4,980 more" in first and len(first) < 400


def test_a_chain_of_thousands_written_backwards_is_in_order(tmp_path):
    """after: pointing down the file: no recursion limit, no quadratic ordering."""
    path = _huge(tmp_path, "  - name: job{i}\n    entrypoint: echo\n    after: [job{next}]\n", 5_000)
    text = open(path).read().replace("    after: [job5000]\n", "")
    open(path, "w").write(text)
    order = load_project(path).order()
    assert order[0] == "job4999" and order[-1] == "job0"


def test_a_valid_huge_project_is_summed_up_in_one_short_line(tmp_path):
    _huge(tmp_path, "  - name: job{i}\n    entrypoint: echo\n", 3_000)
    done = run_cli("project", "validate", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3000 job(s): job0, job1," in done.stdout and "… and 2,980 more)." in done.stdout
    assert len(done.stdout) < 400


@pytest.mark.parametrize(("job", "words"), [
    ("parallelism: 100000000", "parallelism must be at most 10,000"),
    ("retries: 100000000000000000000", "retries must be at most 100"),
    ("timeout: .inf", "timeout must be finite"),
    ("timeout: .nan", "timeout must be more than 0 seconds"),
    ("resources: {memory: .nan}", "resources.memory must be more than 0"),
    ("resources: {memory: .inf}", "resources.memory must be finite"),
    ('env: {A: "x\\0y"}', "env: A contains a NUL character"),
    ('env: {"B=C": x}', "env: 'B=C' is not a variable name"),
    ('env: {"": x}', "env: '' is not a variable name"),
])
def test_values_no_run_could_use_are_refused_with_their_line(tmp_path, job, words):
    """Each would have exhausted memory, hung the budget (NaN) or failed the job with a bare status 127."""
    path = tmp_path / "keel.yaml"
    path.write_text(f"name: p\njobs:\n  - name: a\n    entrypoint: echo\n    {job}\n")
    with pytest.raises(ProjectError) as exc:
        load_project(str(path))
    assert f"keel.yaml:5: job 'a': {words}" in str(exc.value)


def test_a_nul_in_the_entrypoint_is_refused(tmp_path):
    path = tmp_path / "keel.yaml"
    path.write_text('name: p\njobs:\n  - name: a\n    entrypoint: "echo \\0 x"\n')
    with pytest.raises(ProjectError, match=r"keel.yaml:4: job 'a': entrypoint contains a NUL character"):
        load_project(str(path))


@pytest.mark.parametrize("kwargs", [{"cpu": float("nan")}, {"memory": float("inf")}, {"memory": float("nan")}])
def test_a_decorator_refuses_what_keel_yaml_refuses(kwargs):
    from keel import resources
    from keel.errors import DefinitionError

    with pytest.raises(DefinitionError, match=r"@resources\((cpu|memory)=(nan|inf)\): must be"):
        resources(**kwargs)


def test_names_too_long_for_a_folder_are_refused(tmp_path):
    long = "x" * 300
    path = tmp_path / "keel.yaml"
    path.write_text(f"name: {long}\njobs:\n  - name: {long}\n    entrypoint: echo\n")
    with pytest.raises(ProjectError) as exc:
        load_project(str(path))
    text = str(exc.value)
    assert "keel.yaml:1: the project's name xxxx" in text and "at most 200" in text
    assert "keel.yaml:3: job xxxx" in text and long not in text


@pytest.mark.parametrize(("when", "notify", "words"), [
    ("{event: metric, metric: acc, below: .nan}", "{email: a@example.com}", "when.below must be a finite number"),
    ("{event: running_longer_than, minutes: .inf}", "{email: a@example.com}", "when.minutes must be a finite number"),
    ("{event: failed}", '{email: "not an email"}', "email 'not an email' is not an address"),
])
def test_an_alert_that_could_never_fire_or_be_delivered_is_refused(tmp_path, when, notify, words):
    path = tmp_path / "keel.yaml"
    path.write_text(f"name: p\njobs:\n  - name: a\n    entrypoint: echo\n"
                    f"alerts:\n  - name: x\n    when: {when}\n    notify: [{notify}]\n")
    with pytest.raises(ProjectError, match=f"alert 'x': .*{words}"):
        load_project(str(path))


def test_a_nul_in_a_flow_jobs_params_is_refused(tmp_path):
    path = tmp_path / "keel.yaml"
    path.write_text('name: p\njobs:\n  - name: a\n    flow: f.py\n    params: {s: "a\\0b", l: ["x\\0"]}\n')
    with pytest.raises(ProjectError) as exc:
        load_project(str(path))
    assert [i.message for i in exc.value.issues] == [
        f"job 'a': params: {n!r} contains a NUL character (\\0), which no command line or database text can hold; "
        f"remove it" for n in ("s", "l")]
