"""Stored text is shown as text: rich markup escaped, control characters and escape sequences made visible."""

from __future__ import annotations

import json

from keel_testing import run_cli, write_flow

from keel.cli.text import markup, plain

FLOW = """
from keel import FlowSpec, Parameter, step

class Hostile(FlowSpec):
    note = Parameter("note", default="plain")

    @step
    def start(self):
        print("before\\x1b]0;pwned\\x07\\x1b[2Jafter [/x]")
        self.next(self.end)

    @step
    def end(self):
        pass

if __name__ == "__main__":
    Hostile()
"""

HOSTILE = "[/x] [bold]b[/bold] \x1b[31mred\x1b[0m \u202eevil"


def test_plain_makes_escape_sequences_visible():
    assert plain("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert plain("one\ntwo") == "one\\ntwo" and plain("one\ntwo", multiline=True) == "one\ntwo"
    assert "\u202e" not in plain(HOSTILE)


def test_markup_survives_rich():
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(markup(HOSTILE))
    assert "[/x] [bold]b[/bold]" in console.export_text()


def test_runs_show_and_logs_render_hostile_text_as_text(tmp_path, keel_home):
    flow = write_flow(tmp_path, "hostile", FLOW)
    done = run_cli(str(flow), "run", "--note", HOSTILE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert run_cli("comment", "Hostile/1", HOSTILE, "--author", "\x1b[2Jmallory", cwd=tmp_path).returncode == 0
    for args in (("runs",), ("show", "Hostile/1"), ("comment", "Hostile/1"), ("logs", "Hostile/1/start")):
        out = run_cli(*args, cwd=tmp_path, env={"COLUMNS": "300"})
        assert out.returncode == 0, (args, out.stderr)
        text = out.stdout + out.stderr
        assert "Traceback" not in text
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, args
    shown = run_cli("show", "Hostile/1", cwd=tmp_path, env={"COLUMNS": "300"}).stdout
    assert "[/x] [bold]b[/bold]" in shown  # brackets kept, not eaten as markup
    logs = run_cli("logs", "Hostile/1/start", cwd=tmp_path).stdout
    assert "\\x1b[2J" in logs and "[/x]" in logs


def test_json_keeps_the_raw_text(tmp_path, keel_home):
    flow = write_flow(tmp_path, "hostile", FLOW)
    assert run_cli(str(flow), "run", "--note", HOSTILE, cwd=tmp_path).returncode == 0
    rows = json.loads(run_cli("runs", "--json", cwd=tmp_path).stdout)
    assert rows[0]["params"]["note"] == HOSTILE
    raw = run_cli("logs", "Hostile/1/start", "--raw", cwd=tmp_path).stdout
    assert "\x1b[2J" in raw
