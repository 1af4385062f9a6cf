"""Metaflow features its users rely on (issue 16, items 10-14 and 16), run through the CLI or the
runtime and read back with the client."""

from __future__ import annotations

import pytest

from keel_testing import load_flow, run_cli, run_in_process, write_flow
import keel
from keel import Flow
from keel.errors import GraphError


def test_parameters_come_from_the_environment(keel_home, tmp_path):
    (tmp_path / "other.txt").write_text("from the environment")
    path = write_flow(tmp_path, "envparams", '''
        from keel import FlowSpec, step, Parameter, IncludeFile

        class EnvParams(FlowSpec):
            alpha = Parameter("alpha", default=0.5)
            beta = Parameter("beta", default=1)
            data = IncludeFile("data", default="missing.txt")

            @step
            def start(self):
                self.seen = (self.alpha, self.beta, self.data)
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            EnvParams()
    ''')
    proc = run_cli(str(path), "run", "--beta", "3", cwd=tmp_path,
                   env={"METAFLOW_RUN_ALPHA": "0.25", "KEEL_RUN_BETA": "7", "KEEL_RUN_DATA": "other.txt"})
    assert proc.returncode == 0, proc.stderr
    assert Flow("EnvParams").latest_run.data.seen == (0.25, 3, "from the environment")  # the CLI wins


def test_current_knows_its_parameters_user_namespace_and_tags(keel_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_USER", "alice")
    path = write_flow(tmp_path, "who", '''
        from keel import FlowSpec, step, Parameter, current

        class Who(FlowSpec):
            alpha = Parameter("alpha", default=1)

            @step
            def start(self):
                self.fields = (sorted(current.parameter_names), current.is_running_flow, current.username,
                               current.namespace, current.project_name)
                self.tags = sorted(current.tags)
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    data = Flow("Who").latest_run.data
    assert data.fields == (["alpha"], True, "alice", "user:alice", None)
    assert "user:alice" in data.tags and "runtime:dev" in data.tags


def test_user_and_system_tags_and_their_changes(keel_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_USER", "bob")
    path = write_flow(tmp_path, "tagged", '''
        from keel import FlowSpec, step

        class Tagged(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            Tagged()
    ''')
    proc = run_cli(str(path), "run", "--tag", "first", cwd=tmp_path, env={"KEEL_USER": "bob"})
    assert proc.returncode == 0, proc.stderr
    run = Flow("Tagged").latest_run
    assert run.user_tags == ["first"]
    assert "user:bob" in run.system_tags and "first" not in run.system_tags
    assert run.tags == run.user_tags  # Keel's run.tags stays the user's tags (see the README)
    run.add_tag("second")
    run.replace_tag("first", "third")
    assert Flow("Tagged").latest_run.user_tags == ["second", "third"]
    with pytest.raises(keel.errors.UsageError, match="'user:bob' is a system tag"):
        run.remove_tag("user:bob")
    assert [r.id for r in Flow("Tagged").runs("third")] == [run.id]
    assert Flow("Tagged").runs("first") == []


def test_project_branches_and_namespaces(keel_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_USER", "carol")
    path = write_flow(tmp_path, "proj", '''
        from keel import FlowSpec, step, project, current

        @project(name="weather")
        class Proj(FlowSpec):
            @step
            def start(self):
                self.where = (current.project_name, current.branch_name, current.is_production,
                              current.project_flow_name)
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            Proj()
    ''')
    env = {"KEEL_USER": "carol"}
    assert run_cli(str(path), "run", cwd=tmp_path, env=env).returncode == 0
    proc = run_cli(str(path), "run", "--production", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert run_cli(str(path), "run", "--branch", "exp1", cwd=tmp_path, env=env).returncode == 0
    first, prod, branch = (Flow("Proj")[i] for i in (1, 2, 3))
    assert first["start"].task.data.where == ("weather", "user.carol", False, "weather.user.carol.Proj")
    assert prod["start"].task.data.where == ("weather", "prod", True, "weather.prod.Proj")
    assert branch["start"].task.data.where[1] == "test.exp1"
    assert "project_branch:prod" in prod.system_tags and "project:weather" in prod.system_tags
    try:
        assert keel.namespace("project_branch:prod") == keel.get_namespace() == "project_branch:prod"
        assert [r.id for r in Flow("Proj").runs()] == [2]
        assert Flow("Proj").latest_run.id == 2
        assert keel.default_namespace() == "user:carol"
        assert [r.id for r in Flow("Proj").runs()] == [3, 2, 1]
    finally:
        keel.namespace(None)


def test_branch_without_project_is_a_usage_error(keel_home, tmp_path):
    path = write_flow(tmp_path, "plain", '''
        from keel import FlowSpec, step

        class Plain(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            Plain()
    ''')
    proc = run_cli(str(path), "run", "--branch", "x", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--branch needs a project: add @project(name=...) to Plain" in proc.stderr


SWITCH = '''
    from keel import FlowSpec, step, Parameter

    class Switch(FlowSpec):
        mode = Parameter("mode", default="fast")

        @step
        def start(self):
            self.choice = self.mode
            self.next({"fast": self.fast, "slow": self.slow}, condition="choice")

        @step
        def fast(self):
            self.path = "fast"
            self.next(self.after)

        @step
        def slow(self):
            self.path = "slow"
            self.next(self.after)

        @step
        def after(self):
            self.next(self.end)

        @step
        def end(self):
            pass
'''


def test_a_conditional_branch_runs_only_the_chosen_step(keel_home, tmp_path):
    path = write_flow(tmp_path, "switch", SWITCH)
    assert run_in_process(path, {"mode": "slow"}).status == "succeeded"
    run = Flow("Switch").latest_run
    assert run.data.path == "slow"
    assert len(run["fast"]) == 0 and len(run["slow"]) == 1
    assert [s.id for s in run["after"].parent_steps] == ["slow"]


def test_a_conditional_value_without_a_case_fails_the_task(keel_home, tmp_path):
    path = write_flow(tmp_path, "switch", SWITCH)
    result = run_in_process(path, {"mode": "medium"})
    assert result.status == "failed"
    assert result.outcome.error["message"] == ("condition='choice': self.choice is 'medium', which is none of the "
                                               "cases ('fast', 'slow'); set it to one of them or add a case")


def test_a_conditional_transition_is_checked_before_the_run(tmp_path):
    path = write_flow(tmp_path, "badswitch", '''
        from keel import FlowSpec, step

        class BadSwitch(FlowSpec):
            @step
            def start(self):
                self.next({"a": self.a, "b": self.nope})

            @step
            def a(self):
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    from keel.flow.graph import FlowGraph

    with pytest.raises(GraphError) as info:
        FlowGraph(load_flow(path)).check()
    text = str(info.value)
    assert "without condition=\"attr\"" in text
    assert "there is no step 'nope'" in text


def test_the_client_walks_the_graph(keel_home, tmp_path):
    path = write_flow(tmp_path, "walk", '''
        from keel import FlowSpec, step

        class Walk(FlowSpec):
            @step
            def start(self):
                self.items = [1, 2]
                self.next(self.part, foreach="items")

            @step
            def part(self):
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass
    ''')
    assert run_in_process(path).status == "succeeded"
    run = Flow("Walk").latest_run
    start = run["start"].task
    assert sorted(t.id for t in start.child_tasks) == sorted(t.id for t in run["part"])
    join = run["join"].task
    assert sorted(t.id for t in join.parent_tasks) == sorted(t.id for t in run["part"])
    assert [s.id for s in run["part"].parent_steps] == ["start"]
    assert [s.id for s in run["part"].child_steps] == ["join"]
    assert run.end_task.parent_tasks[0].id == join.id
    assert start.parent_tasks == [] and run.end_task.child_tasks == []


def test_the_flow_tag_subcommand(keel_home, tmp_path):
    path = write_flow(tmp_path, "tagcli", '''
        from keel import FlowSpec, step

        class TagCli(FlowSpec):
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass

        if __name__ == "__main__":
            TagCli()
    ''')
    env = {"KEEL_USER": "dave"}
    assert run_cli(str(path), "run", cwd=tmp_path, env=env).returncode == 0
    assert run_cli(str(path), "tag", "add", "--run-id", "1", "a", "b", cwd=tmp_path).returncode == 0
    assert run_cli(str(path), "tag", "replace", "a", "c", cwd=tmp_path).returncode == 0
    assert run_cli(str(path), "tag", "remove", "b", cwd=tmp_path).returncode == 0
    listed = run_cli(str(path), "tag", "list", cwd=tmp_path)
    assert "TagCli/1 user tags: c" in listed.stdout
    assert "user:dave" in listed.stdout
    refused = run_cli(str(path), "tag", "remove", "user:dave", cwd=tmp_path)
    assert refused.returncode == 2
    assert "'user:dave' is a system tag of TagCli/1; only user tags can be removed" in refused.stderr
    assert Flow("TagCli")["1"].system_tags.count("user:dave") == 1


CONFIGURED = '''
    from keel import FlowSpec, step, Config, Parameter, config_expr

    class Configured(FlowSpec):
        config = Config("config", default="config.json")
        defaults = Config("defaults", default_value={"batch": 32})
        lr = Parameter("lr", type=float, default=config_expr("config.model.lr"))

        @step
        def start(self):
            self.seen = (self.config.model.lr, self.config["name"], self.defaults.batch, self.lr)
            try:
                self.config["name"] = "changed"
            except TypeError as exc:
                self.frozen = str(exc)
            self.next(self.end)

        @step
        def end(self):
            pass

    if __name__ == "__main__":
        Configured()
'''


def test_config_is_read_at_start_and_frozen_with_the_run(keel_home, tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"name": "base", "model": {"lr": 0.1}}))
    (tmp_path / "other.json").write_text(json.dumps({"name": "other", "model": {"lr": 0.5}}))
    path = write_flow(tmp_path, "configured", CONFIGURED)
    assert run_cli(str(path), "run", cwd=tmp_path).returncode == 0
    proc = run_cli(str(path), "run", "--config", "other.json", "--lr", "0.7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first, second = Flow("Configured")[1], Flow("Configured")[2]
    assert first.data.seen == (0.1, "base", 32, 0.1)
    assert second.data.seen == (0.5, "other", 32, 0.7)
    assert first.data.frozen == "a configuration is read-only: it is frozen with the run"
    (tmp_path / "config.json").write_text("{}")  # the run keeps the configuration it started with
    assert Flow("Configured")[1]["start"].task.data.config.model.lr == 0.1


def test_a_bad_configuration_file_is_a_usage_error(keel_home, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    path = write_flow(tmp_path, "configured", CONFIGURED)
    proc = run_cli(str(path), "run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--config: cannot parse the configuration 'config.json': JSONDecodeError" in proc.stderr
