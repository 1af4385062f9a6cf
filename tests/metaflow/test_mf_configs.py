"""Metaflow's configs beyond parameter defaults (issue 16, item 15): ``config_expr`` and
``config.key`` in decorator arguments, read when the run starts from the frozen configuration;
the top-level ``--config NAME PATH`` / ``--config-value NAME JSON``; resume keeps the config.

Runs go through the flow's own CLI in this process (``dispatch``, tasks forked), read back
with the client."""

from __future__ import annotations

import json

import pytest

from keel_testing import load_flow, write_flow
from keel import Flow
from keel.cli.flow_cli import dispatch, dispatch_command

CFG_DECO = '''
    import os
    from keel import FlowSpec, step, Config, config_expr, current, environment, retry

    class CfgDeco(FlowSpec):
        cfg = Config("cfg", default="cfg.json")

        @environment(vars={"MODE": cfg.mode})
        @retry(times=config_expr("cfg.retries"))
        @step
        def start(self):
            self.attempts = current.retry_count
            if current.retry_count < 2:
                raise RuntimeError("flaky")
            self.next(self.check)

        @environment(vars={"MODE": config_expr("cfg.mode + '!'")})
        @step
        def check(self):
            self.mode = os.environ["MODE"]
            if os.path.exists("fail-check"):
                raise RuntimeError("told to fail")
            self.next(self.end)

        @step
        def end(self):
            pass
'''


@pytest.fixture
def cfg_flow(keel_home, tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"mode": "a", "retries": 2}))
    path = write_flow(tmp_path, "cfgdeco", CFG_DECO)
    return load_flow(path), str(path)


def _run(flow: tuple[type, str], *argv: str) -> int:
    return dispatch(flow[0], flow[1], list(argv), "python cfgdeco.py")


def test_decorator_arguments_come_from_the_config(cfg_flow):
    assert _run(cfg_flow, "run", "-q") == 0
    run = Flow("CfgDeco").latest_run
    assert run["start"].task.data.attempts == 2          # @retry(times=config_expr("cfg.retries")) = 2
    assert run["check"].task.data.mode == "a!"          # a Python expression over the config


def test_config_name_path_before_the_command(cfg_flow, tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"mode": "b", "retries": 3}))
    assert _run(cfg_flow, "--config", "cfg", "other.json", "run", "-q") == 0
    run = Flow("CfgDeco").latest_run
    assert run.data.cfg == {"mode": "b", "retries": 3}
    assert run["check"].task.data.mode == "b!"


def test_config_value_sets_the_decorators(cfg_flow):
    assert _run(cfg_flow, "--config-value", "cfg", '{"mode": "v", "retries": 0}', "run", "-q") == 1
    task = Flow("CfgDeco").latest_run["start"].task      # no retry: the first failure ends the run
    assert task.status == "failed" and task.attempts == 1


def test_keel_run_takes_config_anywhere_after_the_file(cfg_flow, tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"mode": "k", "retries": 2}))
    code = dispatch_command(cfg_flow[0], cfg_flow[1], "run", ["-q", "--config", "cfg", "other.json"],
                            "keel run cfgdeco.py")
    assert code == 0
    assert Flow("CfgDeco").latest_run["check"].task.data.mode == "k!"


def test_resume_keeps_the_config_the_run_started_with(cfg_flow, tmp_path):
    (tmp_path / "fail-check").write_text("")
    assert _run(cfg_flow, "run", "-q") == 1
    (tmp_path / "fail-check").unlink()
    (tmp_path / "cfg.json").write_text(json.dumps({"mode": "changed", "retries": 2}))
    assert _run(cfg_flow, "resume", "-q") == 0
    run = Flow("CfgDeco").latest_run
    assert run["start"].task.reused
    assert run["check"].task.data.mode == "a!"           # the decorator read the frozen config
    assert run.data.cfg.mode == "a"


def test_a_config_that_does_not_fit_a_decorator_is_a_usage_error(cfg_flow, capsys):
    with pytest.raises(SystemExit) as info:
        _run(cfg_flow, "--config-value", "cfg", '{"mode": "x"}', "run")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "cfgdeco.py:" in err
    assert "@retry: config_expr('cfg.retries'): the configuration has no key 'retries'" in err


def test_an_unknown_config_name_lists_the_configs(cfg_flow, capsys):
    with pytest.raises(SystemExit) as info:
        _run(cfg_flow, "--config", "nope", "x.json", "run")
    assert info.value.code == 2
    assert "--config 'nope': CfgDeco has no Config 'nope'; its configs are: cfg" in capsys.readouterr().err


def test_a_config_value_that_is_not_json_is_a_usage_error(cfg_flow, capsys):
    with pytest.raises(SystemExit) as info:
        _run(cfg_flow, "--config-value", "cfg", "{bad", "run")
    assert info.value.code == 2
    assert "--config-value cfg: not JSON" in capsys.readouterr().err


def test_config_defaults_parsers_and_deep_freezing_follow_metaflow(tmp_path, monkeypatch):
    from keel import Config, FlowSpec, Parameter
    from keel.flow.parameters import resolve_parameters

    monkeypatch.chdir(tmp_path)

    class Defaults(FlowSpec):
        cfg = Config("cfg", default="missing.json", default_value={"model": {"lr": 0.3}})  # no file: the value
        text = Config("text", default_value='{"a": [1, {"b": 2}]}')                        # text: parsed
        dotted = Config("dotted", default_value="[1, 2]", parser="json.loads")             # a parser by name
        kept = Config("kept", default_value={"x": 1}, plain=True)
        lr = Parameter("lr", default=cfg.model.lr)                                          # config.key, as a default

    values = resolve_parameters(Defaults, {})
    assert values["cfg"] == {"model": {"lr": 0.3}} and values["lr"] == 0.3
    assert values["text"].a[1].b == 2 and values["dotted"] == [1, 2]
    assert type(values["kept"]) is dict
    with pytest.raises(TypeError, match="read-only"):
        values["cfg"]["model"]["lr"] = 1                 # nested mappings are frozen too
    (tmp_path / "missing.json").write_text('{"model": {"lr": 0.9}}')
    assert resolve_parameters(Defaults, {})["lr"] == 0.9  # the default file, once it exists, wins


def test_a_parser_that_cannot_be_imported_is_a_usage_error():
    from keel import Config, FlowSpec
    from keel.errors import ParameterError
    from keel.flow.parameters import resolve_parameters

    class BadParser(FlowSpec):
        cfg = Config("cfg", default_value="x: 1", parser="no_such_module_here.load")

    with pytest.raises(ParameterError, match="cannot load its parser 'no_such_module_here.load'"):
        resolve_parameters(BadParser, {})


def test_resume_refuses_a_new_config(cfg_flow, capsys):
    with pytest.raises(SystemExit) as info:
        _run(cfg_flow, "--config", "cfg", "cfg.json", "resume")
    assert info.value.code == 2
    assert "resume keeps the configs of the run it resumes" in capsys.readouterr().err
