"""Bad input on the command line: one line that says what was expected, exit 2, no traceback.
Each case runs as a real process, through both `python flow.py ...` and `keel ...`."""

from __future__ import annotations

import pytest
from reliability_kit import FLOWS, env_for, run

FLOW = str(FLOWS / "counted.py")

CASES = [
    # wrong parameter types
    ([FLOW, "run", "--n", "abc"], "--n expects an integer, got 'abc' (e.g. --n 5)"),
    (["run", FLOW, "--n", "1.5"], "--n expects an integer, got '1.5' (e.g. --n 5)"),
    ([FLOW, "run", "--pause", "soon"], "--pause expects a number, got 'soon' (e.g. --pause 0.5)"),
    ([FLOW, "run", "--spawn", "maybe"], None),
    ([FLOW, "run", "--n"], "--n needs a value (an integer)"),
    ([FLOW, "run", "--max-workers", "x"], "--max-workers expects an integer, got 'x'"),
    ([FLOW, "run", "--max-workers", "0"], "--max-workers must be at least 1, got 0"),
    # unknown parameters and commands
    ([FLOW, "run", "--bogus", "1"], "unknown parameter --bogus. The flow's parameters are: --n, --pause, --spawn"),
    (["run", FLOW, "--bogus", "1"], "unknown parameter --bogus. The flow's parameters are: --n, --pause, --spawn"),
    ([FLOW, "resume", "--n", "3"], "resume does not take --n: parameters come from the origin run"),
    ([FLOW, "frob"], "unknown command 'frob'; commands are: run, resume, show, check, logs, tag "
                     "(see python counted.py --help)"),
    # unknown run ids
    ([FLOW, "resume", "99"], "no run Counted/99 to resume; list the runs with: keel runs Counted"),
    ([FLOW, "resume", "--origin-run-id", "99"], "no run Counted/99 to resume; list the runs with: keel runs Counted"),
    (["resume", "Counted/99"], "no run Counted/99; list the runs with: keel runs Counted"),
    (["show", "Counted/99"], "no run Counted/99; list the runs with: keel runs Counted"),
    (["logs", "Counted/99/start"], "no run Counted/99; list the runs with: keel runs Counted"),
    ([FLOW, "logs", "99/start"], "no run Counted/99; list the runs with: keel runs Counted"),
    (["compare", "Counted/98", "Counted/99"], "no run Counted/98; list the runs with: keel runs Counted"),
    (["runs", "Nope"], "no runs of flow 'Nope'; flows with runs: none yet"),
    ([FLOW, "resume"], "Counted has no run to resume; start one with: run"),
    # malformed pathspecs
    (["show", "Counted"], "malformed pathspec 'Counted': expected Flow/RUN (e.g. BigSum/3)"),
    (["show", "Counted/abc"], "malformed pathspec 'Counted/abc': the run id 'abc' must be an integer"),
    (["show", "Counted/1/start"], "malformed pathspec 'Counted/1/start': expected Flow/RUN (e.g. BigSum/3)"),
    (["resume", "Counted/x"], "malformed pathspec 'Counted/x': the run id 'x' must be an integer"),
    (["compare", "Counted/", "Counted/1"], "malformed pathspec 'Counted/': expected Flow/RUN (e.g. BigSum/3)"),
    (["logs", "Counted/1"], "malformed log target 'Counted/1': expected RUN/STEP[/TASK], e.g. 3/start or 3/part/7"),
    ([FLOW, "logs", "x/y/z"], "malformed log target 'x/y/z': expected RUN/STEP[/TASK], e.g. 3/start or 3/part/7"),
    ([FLOW, "resume", "1", "2", "3"], "resume takes [RUN_ID] [STEP], got '1 2 3'"),
    (["run", "nofile.py"], "no flow file 'nofile.py'; give the path of a .py file that defines a FlowSpec"),
    (["run", FLOW, "--flow"], "--flow needs a flow class name, e.g. --flow TrainFlow"),
    (["run", FLOW, "--flow=Nope"], f"{FLOW} defines no FlowSpec subclass named 'Nope'"),
    # tag (Metaflow's: tag add|remove|replace|list [--run-id ID])
    ([FLOW, "tag"], "tag needs an action: add, remove, replace, list (see: tag --help)"),
    ([FLOW, "tag", "frob", "x"], "unknown tag action 'frob': use add, remove, replace, list (see: tag --help)"),
    ([FLOW, "tag", "add", "x", "--run-id"], "--run-id needs a value"),
    ([FLOW, "tag", "add", "x", "--run-id", "99"], "no run Counted/99; list the runs with: keel runs Counted"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a).replace(FLOW, "counted.py") for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = run(args, env_for(tmp_path / ".keel"), tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    if message is not None:
        assert lines[0] == f"keel: {message}"
    assert proc.stdout == ""
