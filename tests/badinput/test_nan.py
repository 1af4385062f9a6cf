"""NaN and ±inf metrics and parameters are real values: stored, shown, searched, exported."""

from __future__ import annotations

import json
import math

from keel_testing import run_cli, write_flow

FLOW = """
from keel import FlowSpec, Parameter, current, step

class Diverge(FlowSpec):
    alpha = Parameter("alpha", default=0.5)

    @step
    def start(self):
        current.log_metric("loss", 1.0, step=0)
        current.log_metric("loss", float("nan"), step=1)
        current.log_metric("acc", float("inf"))
        current.log_metric("low", float("-inf"))
        self.next(self.end)

    @step
    def end(self):
        current.log_metric("after", 2.0)

if __name__ == "__main__":
    Diverge()
"""


def _run(tmp_path, *args):
    flow = write_flow(tmp_path, "diverge", FLOW)
    done = run_cli(str(flow), "run", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_a_nan_metric_is_stored_with_every_other_point(tmp_path, keel_home):
    _run(tmp_path)
    from keel import Run

    run = Run("Diverge/1")
    assert run.successful
    loss = [v for _, v, _ in run.metrics["loss"]]
    assert loss[0] == 1.0 and math.isnan(loss[1])
    assert run.metrics["acc"][0][1] == math.inf and run.metrics["low"][0][1] == -math.inf
    assert run.metrics["after"][0][1] == 2.0  # the next step ran


def test_nan_is_shown_and_json_is_valid(tmp_path, keel_home):
    _run(tmp_path, "--alpha", "nan")
    show = run_cli("show", "Diverge/1", cwd=tmp_path)
    assert show.returncode == 0 and "loss=nan" in show.stdout and "acc=inf" in show.stdout
    for args in (("runs", "--json"), ("runs", "--where", "metrics.loss > 0", "--json"), ("export", "Diverge/1"),
                 ("compare", "Diverge/1", "Diverge/1", "--json")):
        out = run_cli(*args, cwd=tmp_path)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (args, out.stderr)
        json.loads(out.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # strict JSON
    exported = json.loads(run_cli("export", "Diverge/1", cwd=tmp_path).stdout)
    assert exported["params"]["alpha"] == "nan"
    rows = json.loads(run_cli("runs", "--where", "metrics.acc > 1e308", "--json", cwd=tmp_path).stdout)
    assert [r["pathspec"] for r in rows] == ["Diverge/1"] and rows[0]["metrics"]["acc"] == "inf"


def test_compare_and_csv_show_nan(tmp_path, keel_home):
    _run(tmp_path)
    _run(tmp_path)
    table = run_cli("compare", "Diverge/1", "Diverge/2", cwd=tmp_path, env={"COLUMNS": "200"})
    assert table.returncode == 0 and "nan" in table.stdout
    csv = run_cli("compare", "Diverge/1", "Diverge/2", "--csv", cwd=tmp_path)
    assert csv.returncode == 0 and "nan" in csv.stdout
