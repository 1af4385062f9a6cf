"""resume [RUN_ID] [STEP] with Metaflow's meaning, through real `python flow.py` processes.

Counts come from the flow's own side-effect file: every task execution appends a line.
"""

from __future__ import annotations

from reliability_kit import copy_flow, counts, env_for, run

from keel.client.core import Run


def _ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_fixed_bug_resume_reuses_every_finished_task_and_runs_the_failed_one(tmp_path):
    home = tmp_path / ".keel"
    env = env_for(home)
    flow = copy_flow(tmp_path, bug="work:3")
    first = run([str(flow), "run", "--n", "5", "--quiet"], env, tmp_path)
    assert first.returncode == 1
    assert "Fix it, then: python counted.py resume 1" in first.stderr
    assert counts(home)[("work", "3")] == 1

    copy_flow(tmp_path, bug="")          # the code changed: the bug is fixed
    second = _ok(run([str(flow), "resume", "--quiet"], env, tmp_path))
    assert "Resuming Counted/1 from step 'work': 5 finished task(s) reused" in second.stdout

    c = counts(home)
    assert c[("start", "-")] == 1                                    # reused, not rerun
    assert [c[("work", str(i))] for i in range(5)] == [1, 1, 1, 2, 1]  # only the failed one again
    assert c[("join", "-")] == 1 and c[("end", "-")] == 1

    import os

    os.environ["KEEL_HOME"] = str(home)
    try:
        run2 = Run("Counted/2")
        assert run2.successful and run2.origin_run_id == 1
        assert run2.params["n"] == 5                                  # the origin's parameters
        start = run2["start"].task
        assert (start.status, start.reused, start.origin) == ("reused", True, "Counted/1/start/1")
        works = {t.index: t for t in run2["work"]}
        assert {i: t.status for i, t in works.items()} == {0: "reused", 1: "reused", 2: "reused",
                                                           3: "succeeded", 4: "reused"}
        assert works[0].origin.startswith("Counted/1/work/") and works[3].origin is None
        assert works[1].stdout == "item 1\n"                          # the origin's output
        assert run2.data.result > 0 and run2["work"].task.data.arr.shape == (1000,)
        # by reference: the reused artifact is the very same blob
        first_arr = Run("Counted/1")["work"]
        key1 = {t.index: t.artifacts["arr"].key for t in first_arr if t.successful}
        assert all(works[i].artifacts["arr"].key == key1[i] for i in (0, 1, 2, 4))
    finally:
        del os.environ["KEEL_HOME"]

    show = _ok(run(["show", "Counted/2"], {**env, "COLUMNS": "200"}, tmp_path)).stdout
    print(show)
    assert "resumed from Counted/1" in show
    assert "4 reused, 1 succeeded (from Counted/1)" in show or "1 succeeded, 4 reused (from Counted/1)" in show


def test_resume_of_a_resumed_run_points_at_the_run_that_computed_each_task(tmp_path):
    home = tmp_path / ".keel"
    env = env_for(home)
    flow = copy_flow(tmp_path, bug="join")
    assert run([str(flow), "run", "--n", "3", "--quiet"], env, tmp_path).returncode == 1
    copy_flow(tmp_path, bug="left")
    assert run([str(flow), "resume", "--quiet"], env, tmp_path).returncode == 1     # run 2 fails later
    copy_flow(tmp_path, bug="")
    out = _ok(run([str(flow), "resume", "2", "--quiet"], env, tmp_path)).stdout      # resume the resume
    assert "Resuming Counted/2 from step 'left'" in out
    c = counts(home)
    assert c[("start", "-")] == 1 and c[("work", "0")] == 1 and c[("join", "-")] == 2
    assert c[("left", "-")] == 2 and c[("right", "-")] == 1 and c[("meet", "-")] == 1

    from reliability_kit import store_of

    store = store_of(home)
    run3 = Run("Counted/3", _store=store)
    assert run3.successful and run3.origin_run_id == 2
    assert run3["start"].task.origin == "Counted/1/start/1"        # not Counted/2: it never ran there
    assert run3["join"].task.origin.startswith("Counted/2/join/")
    assert run3["right"].task.origin.startswith("Counted/2/right/")
    assert run3["left"].task.origin is None and run3["left"].task.status == "succeeded"


def test_resume_from_a_named_step_reruns_it_and_what_follows_it_only(tmp_path):
    home = tmp_path / ".keel"
    env = env_for(home)
    flow = copy_flow(tmp_path)
    _ok(run([str(flow), "run", "--n", "3", "--quiet"], env, tmp_path))
    before = counts(home)
    out = _ok(run([str(flow), "resume", "--origin-run-id", "1", "left", "--quiet"], env, tmp_path)).stdout
    assert "Resuming Counted/1 from step 'left'" in out
    after = counts(home)
    rerun = {k for k in after if after[k] > before[k]}
    # left and its descendants run again; right, a sibling branch, is reused (Metaflow's meaning)
    assert rerun == {("left", "-"), ("meet", "-"), ("end", "-")}

    _ok(run([str(flow), "resume", "1", "work", "--quiet"], env, tmp_path))
    again = counts(home)
    assert again[("start", "-")] == 1 and all(again[("work", str(i))] == 2 for i in range(3))
    assert again[("right", "-")] == 2 and again[("end", "-")] == 3


def test_resume_messages(tmp_path):
    home = tmp_path / ".keel"
    env = env_for(home)
    flow = copy_flow(tmp_path)
    _ok(run([str(flow), "run", "--n", "2", "--quiet"], env, tmp_path))
    done = run([str(flow), "resume"], env, tmp_path)
    assert done.returncode == 2
    assert done.stderr == ("keel: run Counted/1 succeeded: nothing failed to resume from. "
                           "Name a step to run again from it: resume 1 STEP\n")
    typo = run([str(flow), "resume", "1", "wrok"], env, tmp_path)
    assert typo.returncode == 2
    assert typo.stderr == ("keel: Counted has no step 'wrok'; did you mean 'work'? "
                           "Steps are: start, work, join, left, right, meet, end\n")
