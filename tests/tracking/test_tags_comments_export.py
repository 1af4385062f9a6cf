"""Tags and comments outside a run (client and CLI), and ``keel export``."""

from __future__ import annotations

import json

import pytest

from keel_testing import run_cli, run_in_process, write_flow
from keel import Flow, Run
from keel.errors import UsageError

TRAIN = '''
    from keel import FlowSpec, Parameter, current, step

    class Train(FlowSpec):
        alpha = Parameter("alpha", default=0.5)

        @step
        def start(self):
            for i in range(3):
                current.log_metric("loss", 1.0 / (i + 1), step=i)
            current.tag("from-step")
            self.model = {"alpha": self.alpha}
            self.next(self.end)

        @step
        def end(self):
            self.score = self.alpha * 2
'''


@pytest.fixture
def train_run(keel_home, tmp_path):
    path = write_flow(tmp_path, "train", TRAIN)
    assert run_in_process(path).status == "succeeded"
    return Flow("Train").latest_run


def test_client_tags_and_comments(train_run, monkeypatch):
    run = train_run
    run.add_tag("baseline", "keep")
    run.remove_tag("keep")
    assert Run("Train/1").tags == ["baseline", "from-step"]
    monkeypatch.setenv("KEEL_USER", "ana")
    first = run.comment("lr too high")
    run.comment("second look: fine", author="bo")
    comments = Run("Train/1").comments
    assert [(c["author"], c["text"]) for c in comments] == [("ana", "lr too high"), ("bo", "second look: fine")]
    assert comments[0]["id"] == first["id"] and comments[0]["created_at"] <= comments[1]["created_at"]
    with pytest.raises(UsageError, match="a comment needs some text"):
        run.comment("  ")


def test_cli_tag_and_comment(train_run):
    proc = run_cli("tag", "Train/1", "best", "v2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Train/1 tags: best, from-step, v2"
    proc = run_cli("tag", "Train/1", "v2", "nope", "--remove")
    assert proc.stdout.strip() == "Train/1 tags: best, from-step"
    assert proc.stderr.strip() == "Train/1 had no tag nope"
    proc = run_cli("tag", "Train/9", "x")
    assert proc.returncode == 2 and proc.stderr.strip() == "keel: no run Train/9; list the runs with: keel runs Train"
    proc = run_cli("tag", "Train/1")
    assert proc.returncode == 2 and proc.stderr.strip() == "keel: give the tags to add, e.g. keel tag Train/1 baseline"
    proc = run_cli("comment", "Train/1", "diverged at step 300", env={"KEEL_USER": "ana"})
    assert proc.returncode == 0 and proc.stdout.strip() == "Comment 1 added to Train/1 by ana"
    proc = run_cli("comment", "Train/1")
    assert proc.stdout.strip().endswith("ana: diverged at step 300")
    proc = run_cli("comment", "Train/1", "")
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'keel: the comment is empty; e.g. keel comment Train/1 "lr too high: diverged"'
    show = run_cli("show", "Train/1")
    assert "comment (ana, " in show.stdout and "): diverged at step 300" in show.stdout
    assert Run("Train/1").tags == ["best", "from-step"]


def test_export_json_has_everything(train_run, tmp_path):
    train_run.comment("exported")
    proc = run_cli("export", "Train/1", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["keel_export"] == 1
    assert data["run"]["pathspec"] == "Train/1" and data["run"]["status"] == "succeeded"
    assert data["params"] == {"alpha": 0.5} and data["tags"] == ["from-step"]
    assert data["comments"][0]["text"] == "exported"
    assert data["environment"]["python"] and "packages" in data["environment"]
    assert data["code_snapshot"]["entry"] == "train.py" and "train.py" in data["code_snapshot"]["files"]
    steps = {s["step"]: s for s in data["steps"]}
    start = steps["start"]["tasks"][0]
    assert start["attempts"][0]["status"] == "succeeded"
    assert set(start["artifacts"]) >= {"model", "alpha"} and start["artifacts"]["model"]["own"] is True
    assert start["resources"]["peak_rss_mb"] > 0
    assert [p["value"] for p in data["metrics"]["loss"]] == [1.0, 0.5, 1.0 / 3]
    assert data["metrics"]["loss"][0]["task_step"] == "start"
    out = tmp_path / "run.json"
    proc = run_cli("export", "Train/1", "-o", str(out))
    assert proc.returncode == 0 and json.loads(out.read_text())["run"]["run_id"] == 1
    proc = run_cli("export", "Train/1", "--format", "yaml")
    assert proc.returncode == 2 and proc.stderr.strip() == "keel: --format yaml: the export formats are: json"
