"""``keel runs`` at 80 columns or piped: one line per run, the run id whole, the layout the same
with --where; long values are cut (the full value is in --json)."""

from __future__ import annotations

import json

from keel_testing import FLOWS, run_cli, run_in_process

LONG_TAG = "a-very-long-tag-" + "x" * 120


def test_runs_keeps_one_line_per_run_and_the_whole_id(keel_home, tmp_path):
    from keel.store import Store

    assert run_in_process(FLOWS / "linear.py").status == "succeeded"
    md = Store.from_env().metadata
    md.annotations.add_tags("LinearFlow", 1, [LONG_TAG])
    env = {"COLUMNS": "80"}
    plain = run_cli("runs", cwd=tmp_path, env=env)
    where = run_cli("runs", "--where", "status = 'succeeded'", cwd=tmp_path, env=env)
    for proc in (plain, where):
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.rstrip("\n").splitlines()
        assert len(lines) == 2, proc.stdout                 # the header and one line for the one run
        assert "LinearFlow/1 " in lines[1]                  # the id whole
        assert all(len(line) <= 80 for line in lines), lines
        assert LONG_TAG not in proc.stdout                  # the long tag is cut...
    assert plain.stdout.splitlines()[0].split()[:4] == where.stdout.splitlines()[0].split()[:4]
    full = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)
    assert LONG_TAG in full[0]["tags"]                      # ...and whole in --json
