"""The one entry point: typed requests in Python, serialized requests in a process of their own,
and the import layers that keep everything below the CLI off it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from keel_testing import write_flow

SRC = Path(__file__).resolve().parents[2] / "src" / "keel"

FLOW = """
from keel import FlowSpec, Parameter, step

class Entry(FlowSpec):
    alpha = Parameter("alpha", default=0.5)
    items = Parameter("items", default=[1, 2])

    @step
    def start(self):
        self.out = self.alpha * sum(self.items)
        self.next(self.end)

    @step
    def end(self):
        if self.out < 0:
            raise ValueError("negative")
"""


def entry(request: dict, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    return subprocess.run([sys.executable, "-m", "keel.runtime.entry", str(path), *extra], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_a_serialized_flow_request_runs_with_its_parameters_and_tags(keel_home, tmp_path) -> None:
    flow = write_flow(tmp_path, "entry_flow.py", FLOW)
    proc = entry({"kind": "flow", "flow_file": str(flow), "params": {"alpha": "2", "items": [3, 4]},
                  "tags": ["from:entry"], "quiet": True}, tmp_path, str(tmp_path / "run.id"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run.id").read_text() == "1"
    from keel import Run

    run = Run("Entry/1")
    assert run.data.out == 14.0 and "from:entry" in run.tags


def test_a_failed_run_exits_1_and_a_bad_request_exits_2_with_one_line(keel_home, tmp_path) -> None:
    flow = write_flow(tmp_path, "entry_flow.py", FLOW)
    failed = entry({"kind": "flow", "flow_file": str(flow), "params": {"alpha": -1}, "quiet": True}, tmp_path)
    assert failed.returncode == 1
    bad = entry({"kind": "flow", "flow_file": str(flow), "params": {"alpah": 1}}, tmp_path)
    assert (bad.returncode, bad.stderr) == (2, "keel: unknown parameter --alpah. Did you mean --alpha? "
                                               "The flow's parameters are: --alpha, --items\n")
    unknown = entry({"kind": "nope"}, tmp_path)
    assert (unknown.returncode, unknown.stderr) == (2, "keel: a run request's kind is 'flow' or 'project', not 'nope'\n")


def test_a_project_request_runs_the_project_through_the_same_entry(keel_home, tmp_path) -> None:
    from keel.flow.loader import load_flow_file
    from keel.flow.project import load_project
    from keel.runtime.entry import ProjectRequest, run
    from keel.runtime.project import ProjectRunOptions

    (tmp_path / "keel.yaml").write_text("name: viaentry\njobs:\n  - name: hello\n    entrypoint: echo hi $KEEL_INSTANCE\n"
                                        "    parallelism: 2\n")
    result = run(ProjectRequest(load_project(str(tmp_path / "keel.yaml"), flow_loader=load_flow_file),
                                ProjectRunOptions(quiet=True)))
    assert result.ok and result.pathspec == "viaentry/1"
    from keel import Run

    assert sorted(t.stdout for t in Run("viaentry/1")["hello"]) == ["hi 0\n", "hi 1\n"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(p.name for p in SRC.iterdir() if p.is_dir() and p.name not in
                                           ("cli", "__pycache__")))
def test_nothing_below_the_cli_imports_it_or_shells_out_to_it(package: str) -> None:
    for path in (SRC / package).rglob("*.py"):
        imported = {n for n in _imports(path) if n == "keel.cli" or n.startswith("keel.cli.")}
        assert not imported, f"{path.relative_to(SRC)} imports {imported}"
        assert "keel.cli.main" not in path.read_text(), f"{path.relative_to(SRC)} starts the CLI"


def test_the_flow_package_imports_no_upper_layer() -> None:
    upper = ("keel.runtime", "keel.store", "keel.tracking", "keel.cli", "keel.client", "keel.schedule")
    for path in (SRC / "flow").rglob("*.py"):
        bad = {n for n in _imports(path) if n.startswith(upper)}
        assert not bad, f"flow/{path.name} imports {bad}"
