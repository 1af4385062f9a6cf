"""Every command's --help exits 0 and lists its options; a flow's run --help lists its Parameters."""

from __future__ import annotations

import click
import pytest

from keel_testing import run_cli, write_flow


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, cmd in sorted(group.commands.items()):
        found.append((*prefix, name))
        if isinstance(cmd, click.Group):
            found += _commands(cmd, (*prefix, name))
    return found


def _keel_commands() -> list[tuple[str, ...]]:
    from keel.cli.main import cli

    return _commands(cli)


@pytest.mark.parametrize("command", _keel_commands(), ids=" ".join)
def test_every_keel_command_has_help_that_exits_0(command: tuple[str, ...]) -> None:
    from click.testing import CliRunner

    from keel.cli.main import cli

    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


@pytest.mark.parametrize("command, options", [
    ("run", ["--max-workers", "--max-num-splits", "--tag", "--with", "--quiet", "--flow CLASS"]),
    ("resume", ["--origin-run-id", "--max-workers", "--tag", "--with", "--quiet"]),
    ("logs", ["--stderr", "--follow"]),
])
def test_keel_run_resume_and_logs_help_list_their_options(command: str, options: list[str]) -> None:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    for option in options:
        assert option in proc.stdout, (option, proc.stdout)


TUNED = """
from keel import FlowSpec, Parameter, step

class Tuned(FlowSpec):
    alpha = Parameter("alpha", default=0.5, help="learning rate")
    depth = Parameter("depth", default=3, help="tree depth")
    fast = Parameter("fast", default=False, help="skip the slow part")
    label = Parameter("label", default="base", help="what to call it")

    @step
    def start(self):
        self.out = (self.alpha, self.depth, self.fast, self.label)
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Tuned()
"""


def test_a_flows_run_help_lists_its_parameters_with_help_type_and_default(tmp_path) -> None:
    flow = write_flow(tmp_path, "tuned.py", TUNED)
    for args in ([str(flow), "run", "--help"], ["run", str(flow), "--help"]):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip().startswith("--")}
        assert "FLOAT" in lines["--alpha"] and "learning rate" in lines["--alpha"] and "[default: 0.5]" in lines["--alpha"]
        assert "INTEGER" in lines["--depth"] and "[default: 3]" in lines["--depth"]
        assert "BOOLEAN" in lines["--fast"] and "[default: false]" in lines["--fast"]
        assert "TEXT" in lines["--label"] and "[default: base]" in lines["--label"]


@pytest.mark.parametrize("command", [(), ("run",), ("resume",), ("show",), ("check",), ("logs",), ("tag",),
                                     ("tag", "add"), ("tag", "remove"), ("tag", "replace"), ("tag", "list")], ids=str)
def test_every_command_of_a_flow_has_help_that_exits_0(tmp_path, command: tuple[str, ...]) -> None:
    flow = write_flow(tmp_path, "tuned.py", TUNED)
    proc = run_cli(str(flow), *command, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: python tuned.py")
    if command[:1] == ("tag",) and len(command) == 2:
        assert "--run-id ID" in proc.stdout  # an option of its own, not parsed by hand


def test_parameters_given_on_the_command_line_reach_the_run(keel_home, tmp_path) -> None:
    flow = write_flow(tmp_path, "tuned.py", TUNED)
    proc = run_cli(str(flow), "run", "--alpha", "0.25", "--depth=7", "--fast", "--label", "x", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from keel import Run

    assert Run("Tuned/1").data.out == (0.25, 7, True, "x")
    proc = run_cli("run", str(flow), "--no-fast", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Run("Tuned/2").data.out == (0.5, 3, False, "base")
