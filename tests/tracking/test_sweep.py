"""``keel sweep``: grid, random and Optuna sweeps of real runs, with failing trials."""

from __future__ import annotations

import pytest

from keel_testing import run_cli, write_flow
from keel import Flow
from keel.errors import UsageError
from keel.tracking.sweep import parse_space

FLOW = '''
    from keel import FlowSpec, Parameter, current, step

    class Tune(FlowSpec):
        alpha = Parameter("alpha", default=0.1)
        depth = Parameter("depth", default=3)

        @step
        def start(self):
            if self.alpha > 0.9:
                raise ValueError("alpha too large")
            current.log_metric("acc", 1.0 - abs(self.alpha - 0.3) - abs(self.depth - 5) * 0.01)
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def test_spaces():
    assert parse_space("alpha=0.1,0.2,0.3").grid() == ["0.1", "0.2", "0.3"]
    assert parse_space("depth=2:5").grid() == ["2", "3", "4", "5"]
    assert parse_space("lr=0.1:0.3:0.1").grid() == ["0.1", "0.2", "0.3"]
    space = parse_space("lr=1e-4:1e-1:log")
    assert space.log and not space.integer
    with pytest.raises(UsageError) as info:
        parse_space("lr=0.0:1.0").grid()
    assert str(info.value) == ("--param lr=0.0:1.0 is a continuous range; a grid needs a list (a,b,c) or a step "
                               "(lr=0.0:1.0:STEP), or sample it with --random N or --optuna N")
    with pytest.raises(UsageError, match=r"--param depth=8:2: the range goes down \(8 > 2\); write it LOW:HIGH"):
        parse_space("depth=8:2")
    with pytest.raises(UsageError, match="expected NAME=VALUES"):
        parse_space("alpha")


def test_grid_sweep_runs_every_trial_and_survives_failures(keel_home, tmp_path):
    path = write_flow(tmp_path, "tune", FLOW)
    proc = run_cli("sweep", str(path), "--param", "alpha=0.1,0.3,0.95", "--param", "depth=4:5",
                   "--objective", "metrics.acc", "--parallel", "2", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    sweep_tag = out.split("runs tagged ", 1)[1].split()[0]
    assert sweep_tag.startswith("sweep:")
    runs = Flow("Tune").runs(sweep_tag)
    assert len(runs) == 6
    assert sorted((r.params["alpha"], r.params["depth"]) for r in runs) == [
        (0.1, 4), (0.1, 5), (0.3, 4), (0.3, 5), (0.95, 4), (0.95, 5)]
    assert sorted(r.status for r in runs) == ["failed"] * 2 + ["succeeded"] * 4
    assert out.count(" failed  ") == 2 and "(log: " in out
    best = out.split("Best trials by metrics.acc (max)", 1)[1].splitlines()
    first = best[2].split()
    assert first[2:5] == ["0.3", "5", "1"]  # alpha, depth, acc of the best trial
    best_run = next(r for r in runs if r.params == {"alpha": 0.3, "depth": 5})
    assert first[1] == best_run.pathspec
    assert f"4 of 6 trials succeeded, 2 failed. All of them: keel runs Tune --where '\"{sweep_tag}\" in tags' " \
           f"--sort -metrics.acc" in out


def test_optuna_and_random_sweeps(keel_home, tmp_path):
    pytest.importorskip("optuna")
    path = write_flow(tmp_path, "tune", FLOW)
    proc = run_cli("sweep", str(path), "--param", "alpha=0:1", "--param", "depth=2:8", "--optuna", "4",
                   "--objective", "metrics.acc", "--direction", "max", "--parallel", "2", "--seed", "3", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tag = proc.stdout.split("runs tagged ", 1)[1].split()[0]
    runs = Flow("Tune").runs(tag)
    assert len(runs) == 4
    assert all(0.0 <= r.params["alpha"] <= 1.0 and 2 <= r.params["depth"] <= 8 for r in runs)
    assert len({r.params["alpha"] for r in runs}) == 4  # a float parameter gets floats from 0:1
    proc = run_cli("sweep", str(path), "--param", "alpha=0.0:0.5", "--random", "3", "--seed", "1", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 of 3 trials succeeded" in proc.stdout


def test_sweep_usage_errors(keel_home, tmp_path):
    path = write_flow(tmp_path, "tune", FLOW)
    proc = run_cli("sweep", str(path), "--param", "alpah=1,2")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("keel: --param alpah: Tune has no parameter 'alpah'. Did you mean alpha? "
                                   "Its parameters are: alpha, depth")
    proc = run_cli("sweep", str(path), "--param", "alpha=0:1", "--optuna", "3")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("keel: --optuna needs an --objective to optimize, e.g. --objective metrics.acc "
                                   "--direction max")
    proc = run_cli("sweep", str(path), "--param", "alpha=0.0:1.0")
    assert proc.returncode == 2 and "is a continuous range; a grid needs a list" in proc.stderr
    assert Flow("Tune").latest_run is None  # nothing ran
