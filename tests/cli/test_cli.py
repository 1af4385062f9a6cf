"""The command line: both spellings, reading commands, and one-line errors with exit 2."""

from __future__ import annotations

import json

import pytest

from keel_testing import FLOWS, run_cli


@pytest.fixture
def ran(keel_home, tmp_path):
    proc = run_cli("run", str(FLOWS / "foreach.py"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path


def test_both_spellings_run_and_print_the_run_id(keel_home, tmp_path):
    a = run_cli(str(FLOWS / "linear.py"), "run", cwd=tmp_path)
    b = run_cli("run", str(FLOWS / "linear.py"), cwd=tmp_path)
    assert a.returncode == b.returncode == 0
    assert "Run LinearFlow/1 started" in a.stdout + a.stderr
    assert "Run LinearFlow/2 started" in b.stdout + b.stderr


def test_show_prints_the_graph(tmp_path):
    for args in ((str(FLOWS / "foreach.py"), "show"), ("show", str(FLOWS / "foreach.py"))):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "foreach over" in proc.stdout and "Step start" in proc.stdout


def test_runs_show_and_compare(ran):
    runs = run_cli("runs", "--json", cwd=ran)
    assert runs.returncode == 0
    listed = json.loads(runs.stdout)
    assert [r["pathspec"] for r in listed] == ["ForeachFlow/1"] and listed[0]["status"] == "succeeded"
    show = run_cli("show", "ForeachFlow/1", cwd=ran)
    assert show.returncode == 0, show.stderr
    for text in ("ForeachFlow/1", "succeeded", "start", "join", "end"):
        assert text in show.stdout
    assert run_cli("run", str(FLOWS / "foreach.py"), cwd=ran).returncode == 0
    cmp = run_cli("compare", "ForeachFlow/1", "ForeachFlow/2", "--json", cwd=ran)
    assert cmp.returncode == 0, cmp.stderr
    assert [r["run"] for r in json.loads(cmp.stdout)] == ["ForeachFlow/1", "ForeachFlow/2"]


def test_show_prints_the_spark_ui_a_task_recorded(ran):
    from keel.addons.spark import record_link

    record_link("spark_ui", "http://127.0.0.1:41234", ("ForeachFlow", 1, 1))   # what a @spark task does
    show = run_cli("show", "ForeachFlow/1", cwd=ran)
    assert show.returncode == 0, show.stderr
    assert "Spark UI of ForeachFlow/1/start/1: http://127.0.0.1:41234" in show.stdout


@pytest.mark.parametrize("args, message", [
    (("show", "ForeachFlow/x"),
     "keel: malformed pathspec 'ForeachFlow/x': the run id 'x' must be an integer"),
    (("show", "ForeachFlow/99"),
     "keel: no run ForeachFlow/99; list the runs with: keel runs ForeachFlow"),
    (("show", "ForeachFlow"),
     "keel: malformed pathspec 'ForeachFlow': expected Flow/RUN (e.g. BigSum/3)"),
    (("runs", "Nope"), "keel: no runs of flow 'Nope'; flows with runs: ForeachFlow"),
    (("logs", "ForeachFlow/1"),
     "keel: malformed log target 'ForeachFlow/1': expected RUN/STEP[/TASK], e.g. 3/start or 3/part/7"),
    (("run", "missing.py"),
     "keel: no flow file 'missing.py'; give the path of a .py file that defines a FlowSpec"),
    (("compare", "ForeachFlow/1"), "keel: compare needs at least two runs, e.g. keel compare BigSum/3 BigSum/4"),
])
def test_bad_input_gets_one_line_and_exit_2(ran, args, message):
    proc = run_cli(*args, cwd=ran)
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    (("--n", "abc"), "keel: --n expects an integer, got 'abc' (e.g. --n 5)"),
    (("--nn", "3"), "keel: unknown parameter --nn. Did you mean --n? The flow's parameters are: --n"),
    (("--zzz", "3"), "keel: unknown parameter --zzz. The flow's parameters are: --n"),
    (("--n",), "keel: --n needs a value (an integer)"),
    (("--max-workers", "zero"), "keel: --max-workers expects an integer, got 'zero'"),
    (("--max-workers", "0"), "keel: --max-workers must be at least 1, got 0"),
])
def test_bad_run_arguments(keel_home, tmp_path, args, message):
    flow = tmp_path / "p.py"
    flow.write_text("from keel import FlowSpec, step, Parameter\n\n"
                    "class P(FlowSpec):\n    n = Parameter('n', default=1)\n\n"
                    "    @step\n    def start(self):\n        self.next(self.end)\n\n"
                    "    @step\n    def end(self):\n        pass\n\n"
                    "if __name__ == '__main__':\n    P()\n")
    proc = run_cli(str(flow), "run", *args, cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (2, message)


def test_graph_errors_are_reported_before_anything_runs(keel_home, tmp_path):
    proc = run_cli("run", str(FLOWS / "bad_three_problems.py"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "3 problem(s) in the flow's graph" in proc.stderr
    assert not (keel_home / "metadata.db").exists()


def test_logs_of_a_foreach_step_prefix_each_task(ran):
    proc = run_cli("logs", "ForeachFlow/1/start", cwd=ran)
    assert proc.returncode == 0, proc.stderr
    flow_file = str(FLOWS / "foreach.py")
    assert run_cli("logs", flow_file, "1/start", cwd=ran).stdout == proc.stdout


def test_logs_follow_streams_while_the_run_goes_and_stops_when_it_ends(keel_home, tmp_path):
    import subprocess
    import sys
    import time

    flow = tmp_path / "talk.py"
    flow.write_text("import time\nfrom keel import FlowSpec, step\n\n"
                    "class Talk(FlowSpec):\n"
                    "    @step\n    def start(self):\n"
                    "        for i in range(5):\n            print('line', i, flush=True)\n"
                    "            time.sleep(0.3)\n"
                    "        self.next(self.end)\n\n"
                    "    @step\n    def end(self):\n        pass\n\n"
                    "if __name__ == '__main__':\n    Talk()\n")
    run = subprocess.Popen([sys.executable, str(flow), "run"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120  # generous: a loaded machine is slow to start processes
    while not (keel_home / "logs" / "Talk" / "1" / "start" / "1.stdout").exists():
        assert time.monotonic() < deadline, "the task's log never appeared"
        time.sleep(0.05)
    follow = run_cli("logs", "Talk/1/start/1", "--follow", cwd=tmp_path, timeout=180)
    assert run.wait(timeout=30) == 0
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout == "".join(f"line {i}\n" for i in range(5))


def test_run_id_file_and_project_options_before_or_after_the_command(keel_home, tmp_path):
    flow = tmp_path / "proj.py"
    flow.write_text(
        "from keel import FlowSpec, step, project, current\n"
        "@project(name='demo')\n"
        "class Proj(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        "        print('branch', current.branch_name)\n"
        "        self.next(self.end)\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
        "if __name__ == '__main__':\n"
        "    Proj()\n")
    before = run_cli(str(flow), "--branch", "exp", "run", "--run-id-file", "rid", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "branch test.exp" in before.stdout and (tmp_path / "rid").read_text() == "1"
    after = run_cli("run", str(flow), "--production", "--run-id-file", "rid", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert "branch prod" in after.stdout and (tmp_path / "rid").read_text() == "2"
