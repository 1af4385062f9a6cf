"""Twenty real `python flow.py run` processes started together on one KEEL_HOME."""

from __future__ import annotations

import subprocess

from reliability_kit import FLOWS, PYTHON, copy_flow, env_for, store_of

from keel.client.core import Flow

RUNS = 20


def test_twenty_runs_at_once(tmp_path):
    home = tmp_path / ".keel"
    go = tmp_path / "go"
    env = env_for(home, KEEL_TEST_GO=str(go))
    counted = copy_flow(tmp_path)
    # counted.py has no start barrier: give it one by importing chatty's wait first
    procs = []
    for i in range(RUNS):
        if i % 2:
            args = [PYTHON, "-c", "import runpy, sys; sys.argv = sys.argv[1:]; "
                    "import os, time\n"
                    "while not os.path.exists(os.environ['KEEL_TEST_GO']): time.sleep(0.005)\n"
                    "runpy.run_path(sys.argv[0], run_name='__main__')",
                    str(counted), "run", "--n", "3", "--quiet"]
        else:
            args = [PYTHON, str(FLOWS / "chatty.py"), "run", "--quiet"]
        procs.append(subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    go.write_text("go")  # every process waits for this file: their runs start together
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert "database is locked" not in out + err

    store = store_of(home)
    for name, width in (("Chatty", RUNS // 2), ("Counted", RUNS // 2)):
        runs = sorted(Flow(name, _store=store).runs(), key=lambda r: r.id)
        assert [r.id for r in runs] == list(range(1, width + 1))          # unique, no gaps
        created = [r.created_at for r in runs]
        assert created == sorted(created)                                 # increasing with time
        assert all(r.successful for r in runs)
    for r in Flow("Chatty", _store=store).runs():
        metrics = r.metrics["m"]
        assert len(metrics) == 4 * 500                                     # no metric point lost
        assert sorted(v for _, v, _ in metrics) == sorted(float(i) for i in range(500) for _ in range(4))
        for task in r["talk"]:
            assert task.stdout.splitlines() == [f"line {task.index} {i}" for i in range(50)]  # no line lost
        assert r.data.parts_seen == [0, 1, 2, 3]
    for r in Flow("Counted", _store=store).runs():
        assert r.data.result == 2 * 499500.0 * 3 + 499500.0 * 3 + 1
