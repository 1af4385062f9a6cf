"""Step caching through real runs: a flow file is rewritten between two runs and each case
asserts which steps were taken from the cache."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import pytest

from keel_testing import edit_file, run_cli

FLOW = '''
from keel import FlowSpec, step, cache, resources, Parameter
import helpers

RATE = 2


class Cached(FlowSpec):
    n = Parameter("n", default=3)

    @cache
    @step
    def start(self):
        # a comment
        self.items = [helpers.scale(i) for i in range(self.n)]
        self.next(self.part, foreach="items")

    @cache
    @resources(cpu=1)
    @step
    def part(self):
        self.out = self.input * RATE
        self.next(self.join)

    @cache
    @step
    def join(self, inputs):
        self.total = sum(i.out for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print("total", self.total)


if __name__ == "__main__":
    Cached()
'''

HELPERS = '''
def scale(x):
    return deeper(x)


def deeper(x):
    return x * 10
'''


def write(folder: Path, flow: str = FLOW, helpers: str = HELPERS) -> Path:
    edit_file(folder / "helpers.py", textwrap.dedent(helpers))
    path = folder / "cached.py"
    edit_file(path, textwrap.dedent(flow))
    return path


def run(path: Path, *args: str) -> dict[str, list[bool]]:
    proc = run_cli(str(path), "run", *args, cwd=path.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from keel import Flow

    r = Flow("Cached").latest_run
    return {s.id: [t.cached for t in s] for s in r} | {"_total": r.data.total, "_run": r.id}


@pytest.fixture
def flow(keel_home, tmp_path) -> Path:
    return write(tmp_path)


def test_a_second_identical_run_takes_every_cached_step_from_the_cache(flow):
    first = run(flow)
    assert first["start"] == [False] and first["part"] == [False] * 3
    second = run(flow)
    assert second["start"] == [True] and second["part"] == [True] * 3 and second["join"] == [True]
    assert second["end"] == [False]  # not marked @cache
    assert second["_total"] == first["_total"] == 60


def test_a_cached_task_names_its_origin_and_copies_no_bytes(flow, keel_home):
    run(flow)
    blobs = sorted(p.name for p in (keel_home / "artifacts").rglob("*") if p.is_file())
    run(flow)
    from keel import Flow

    r = Flow("Cached").latest_run
    t = r["start"].task
    assert t.cached and not t.reused and t.origin == f"Cached/{r.id - 1}/start/{t.origin.split('/')[-1]}"
    assert sorted(p.name for p in (keel_home / "artifacts").rglob("*") if p.is_file()) == blobs


@pytest.mark.parametrize("edit,hits", [
    (lambda f, h: (f.replace("# a comment", "# changed comment\n        # another"), h), "all"),
    (lambda f, h: (f.replace("@resources(cpu=1)", "@resources(cpu=2)"), h), "all"),
    (lambda f, h: (f.replace("self.input * RATE", "self.input * RATE + 1"), h), "start"),
    (lambda f, h: (f.replace("RATE = 2", "RATE = 3"), h), "start"),
    (lambda f, h: (f, h.replace("x * 10", "x * 11")), "item0"),  # items 0, 11, 22: split 0 is unchanged
])
def test_edits_between_runs(flow, edit, hits):
    run(flow)
    f, h = edit(FLOW, HELPERS)
    write(flow.parent, f, h)
    second = run(flow)
    if hits == "all":
        assert second["start"] == [True] and second["part"] == [True] * 3
    elif hits == "start":
        assert second["start"] == [True] and second["part"] == [False] * 3
    else:
        assert second["start"] == [False] and second["part"] == [True, False, False]


def test_a_changed_parameter_misses_and_the_old_value_hits_again(flow):
    run(flow)
    assert run(flow, "--n", "4")["start"] == [False]
    assert run(flow, "--n", "3")["start"] == [True]


def test_one_changed_foreach_item_misses_only_its_split(flow):
    run(flow)
    write(flow.parent, FLOW.replace("for i in range(self.n)]", "for i in range(self.n)]\n"
                                    "        self.items[1] = 999"))
    second = run(flow)
    assert second["start"] == [False]
    assert second["part"] == [True, False, True]


def test_a_deleted_blob_is_a_miss_and_the_run_succeeds(flow, keel_home):
    run(flow)
    from keel import Flow

    r = Flow("Cached").latest_run
    key = r["start"].task.artifacts["items"]._ref.key if hasattr(r["start"].task.artifacts["items"], "_ref") else None
    for p in (keel_home / "artifacts").rglob("*"):
        if p.is_file() and (key is None or p.name == key):
            p.unlink()
    second = run(flow)
    assert second["start"] == [False]
    assert second["_total"] == 60


def test_no_cache_and_keel_cache_off_turn_it_off(flow):
    run(flow)
    assert run(flow, "--no-cache")["start"] == [False]
    proc = run_cli(str(flow), "run", cwd=flow.parent, env={"KEEL_CACHE": "off"})
    assert proc.returncode == 0
    from keel import Flow

    assert Flow("Cached").latest_run["start"].task.cached is False


def test_a_changed_file_read_by_the_step_misses(keel_home, tmp_path):
    (tmp_path / "data.txt").write_text("1 2 3")
    src = FLOW.replace("self.items = [helpers.scale(i) for i in range(self.n)]",
                       "self.items = [int(x) for x in open('data.txt').read().split()]")
    path = write(tmp_path, src)
    run(path)
    assert run(path)["start"] == [True]
    (tmp_path / "data.txt").write_text("1 2 4")
    third = run(path)
    assert third["start"] == [False]
    assert third["part"] == [True, True, False]


def test_explain_names_the_part_that_changed(flow):
    run(flow)
    write(flow.parent, FLOW.replace("RATE = 2", "RATE = 5"))
    second = run(flow)
    proc = run_cli("cache", "explain", f"Cached/{second['_run']}/part", cwd=flow.parent)
    assert proc.returncode == 0, proc.stderr
    assert "globals" in proc.stdout and "CHANGED" in proc.stdout
    assert "changed globals" in proc.stdout


def test_run_cache_caches_steps_without_the_decorator(flow):
    run(flow, "--cache")
    assert run(flow, "--cache")["end"] == [True]


def test_concurrent_identical_runs_compute_each_key_once(keel_home, tmp_path):
    src = FLOW.replace("self.out = self.input * RATE", "import time; time.sleep(1.5); self.out = self.input * RATE")
    path = write(tmp_path, src)
    procs: list = []

    def go() -> None:
        procs.append(run_cli(str(path), "run", cwd=tmp_path))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
    from keel import Flow

    runs = list(Flow("Cached").runs())
    computed = sum(not t.cached for r in runs for t in r["part"])
    assert computed == 3, computed


def test_prune_forgets_old_entries(flow):
    run(flow)
    proc = run_cli("cache", "prune", "--older-than", "0s", cwd=flow.parent)
    assert proc.returncode == 0 and "pruned" in proc.stdout
    assert run(flow)["start"] == [False]
    bad = run_cli("cache", "prune", "--older-than", "soon", cwd=flow.parent)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
