"""One tag validator for `keel tag`, `--tag`, current.tag(), the client and the dashboard."""

from __future__ import annotations

import pytest
from keel_testing import run_cli, write_flow

from keel.errors import UsageError
from keel.flow.tags import check_tag

FLOW = """
from keel import FlowSpec, current, step

class Tagged(FlowSpec):
    @step
    def start(self):
        import os
        current.tag(os.environ.get("TAG_IN_STEP", "fine"))
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Tagged()
"""

BAD = {"empty": "", "blank": "   ", "multi-line": "a\nb", "escape": "x\x1b[2J", "long": "x" * 10_000,
       "project": "project:Weather/1", "sweep": "sweep:20240101-x", "reproduces": "reproduces:Tagged/1"}


@pytest.mark.parametrize("name", list(BAD))
def test_the_validator_refuses_each_class_of_bad_tag(name):
    with pytest.raises(UsageError) as exc:
        check_tag(BAD[name])
    assert len(str(exc.value)) < 400  # never echoes the 10,000 characters


def test_keel_reserves_its_prefixes_for_itself():
    assert check_tag("sweep:20240101-ab12", system=True) == "sweep:20240101-ab12"


def _one_run(tmp_path, keel_home):
    flow = write_flow(tmp_path, "tagged", FLOW)
    done = run_cli(str(flow), "run", "--tag", "ok", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return flow


@pytest.mark.parametrize("name", ["empty", "multi-line", "long", "sweep"])
def test_run_tag_refuses_bad_tags_before_the_run(tmp_path, keel_home, name):
    flow = write_flow(tmp_path, "tagged", FLOW)
    done = run_cli(str(flow), "run", "--tag", BAD[name], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "tag" in done.stderr and len(done.stderr) < 600
    assert not (keel_home / "logs").exists()  # nothing ran


@pytest.mark.parametrize("name", ["empty", "multi-line", "long", "project", "reproduces"])
def test_keel_tag_refuses_bad_tags_and_keeps_the_old_ones(tmp_path, keel_home, name):
    _one_run(tmp_path, keel_home)
    done = run_cli("tag", "Tagged/1", BAD[name], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    from keel import Run

    assert sorted(Run("Tagged/1").tags) == ["fine", "ok"]


def test_the_client_and_current_use_the_same_validator(tmp_path, keel_home):
    _one_run(tmp_path, keel_home)
    from keel import Run

    with pytest.raises(UsageError, match="reserves"):
        Run("Tagged/1").add_tag("sweep:forged")
    flow = tmp_path / "tagged.py"
    done = run_cli(str(flow), "run", cwd=tmp_path, env={"TAG_IN_STEP": "project:Forged/1"})
    assert done.returncode == 1
    assert "reserves" in done.stdout + done.stderr
    assert all(not t.startswith("project:") for t in Run("Tagged/2").tags)
