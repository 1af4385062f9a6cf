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
    started = time.monotonic()
    with pytest.raises(ProjectError, match="aliases"):
        load_project(str(path))
    assert time.monotonic() - started < 5


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
