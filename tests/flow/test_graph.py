"""FlowGraph: parsing steps and self.next(...), graph shapes, and every validation message."""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import pytest

import keel
from keel.errors import GraphError, Issue
from keel.flow.decorators import retry, resources, step
from keel.flow.graph import FlowGraph, Node

FLOWS = Path(__file__).resolve().parents[1] / "flows"
GOOD = ["linear", "branch", "nested_branch", "foreach", "nested_foreach", "foreach_in_branch",
        "branch_in_foreach"]
BAD = sorted(p.stem for p in FLOWS.glob("bad_*.py"))


class FlowSpec:
    """Stand-in base class: the graph must work on any class, FlowSpec or not."""


@pytest.fixture
def load(monkeypatch):
    """Import a fixture from tests/flows/ and return its flow class (the one with steps).

    While keel.FlowSpec cannot be imported yet, the fixtures get the stand-in above.
    """
    try:
        keel.FlowSpec  # noqa: B018 - resolves the lazy export
    except Exception:  # noqa: BLE001 - not written yet, or broken mid-edit
        monkeypatch.setitem(vars(keel), "FlowSpec", FlowSpec)  # setattr would ask keel.__getattr__

    def _load(name: str) -> type:
        path = FLOWS / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_keel_test_flow_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and v.__module__ == module.__name__
                   and any(getattr(f, "_keel_step", False) for f in vars(v).values())]
        assert len(classes) == 1, classes
        classes[0]._module = module
        return classes[0]

    return _load


def shown(path: Path | str) -> str:
    """A path as messages show it: relative to the current directory when under it."""
    path = os.path.abspath(path)
    return os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path


def line_of(path: Path | str, text: str) -> int:
    """The line (1-based) of the only line of ``path`` that contains ``text``."""
    hits = [i for i, line in enumerate(Path(path).read_text().splitlines(), 1) if text in line]
    assert len(hits) == 1, (text, hits)
    return hits[0]


def here(marker: str, message: str) -> Issue:
    """An issue at the line of this file that ends with the comment ``marker``."""
    hits = [i for i, line in enumerate(Path(__file__).read_text().splitlines(), 1) if line.endswith(marker)]
    assert len(hits) == 1, (marker, hits)
    return Issue(shown(__file__), hits[0], message)


# -- good shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_good_shapes_are_valid(load, name):
    cls = load(name)
    graph = FlowGraph(cls)
    assert graph.issues() == []
    graph.check()
    order = graph.sorted_nodes()
    assert order[0] == "start" and order[-1] == "end"
    assert sorted(order) == sorted(graph.nodes)
    for node in graph:
        for target in node.out_funcs:
            assert order.index(node.name) < order.index(target)
            assert node.name in graph[target].in_funcs
    assert "result" in cls._module.EXPECTED


# name -> {step: (kind, is_join, split_parents, matching_join)}
SHAPES = {
    "linear": {"start": ("linear", False, [], None), "middle": ("linear", False, [], None),
               "end": ("end", False, [], None)},
    "branch": {"start": ("split", False, [], "join"), "add": ("linear", False, ["start"], None),
               "multiply": ("linear", False, ["start"], None), "join": ("linear", True, ["start"], None),
               "end": ("end", False, [], None)},
    "nested_branch": {"start": ("split", False, [], "join"), "left": ("split", False, ["start"], "left_join"),
                      "l1": ("linear", False, ["start", "left"], None),
                      "left_join": ("linear", True, ["start", "left"], None),
                      "right": ("linear", False, ["start"], None), "join": ("linear", True, ["start"], None)},
    "foreach": {"start": ("foreach", False, [], "join"), "square": ("linear", False, ["start"], None),
                "join": ("linear", True, ["start"], None), "end": ("end", False, [], None)},
    "nested_foreach": {"start": ("foreach", False, [], "join"), "row": ("foreach", False, ["start"], "row_join"),
                       "cell": ("linear", False, ["start", "row"], None),
                       "row_join": ("linear", True, ["start", "row"], None),
                       "join": ("linear", True, ["start"], None)},
    "foreach_in_branch": {"start": ("split", False, [], "join"), "fan": ("foreach", False, ["start"], "fan_join"),
                          "work": ("linear", False, ["start", "fan"], None),
                          "fan_join": ("linear", True, ["start", "fan"], None),
                          "single": ("linear", False, ["start"], None)},
    "branch_in_foreach": {"start": ("foreach", False, [], "join"), "body": ("split", False, ["start"], "body_join"),
                          "double": ("linear", False, ["start", "body"], None),
                          "body_join": ("linear", True, ["start", "body"], None),
                          "join": ("linear", True, ["start"], None)},
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_split_parents_and_matching_joins(load, name):
    graph = FlowGraph(load(name))
    for step_name, (kind, is_join, parents, join) in SHAPES[name].items():
        node = graph[step_name]
        assert (node.kind, node.is_join, node.split_parents, node.matching_join) == (kind, is_join, parents, join), \
            step_name


def test_nodes_of_a_linear_flow(load):
    graph = FlowGraph(load("linear"))
    path = FLOWS / "linear.py"
    assert graph.name == "LinearFlow"
    assert graph.file == shown(path)
    assert list(graph.nodes) == ["start", "middle", "end"]
    start = graph["start"]
    assert isinstance(start, Node)
    assert start.file == shown(path)
    assert start.lineno == line_of(path, "def start(self):")
    assert start.next_lineno == line_of(path, "self.next(self.middle)")
    assert start.out_funcs == ["middle"] and start.in_funcs == []
    assert start.doc == "Store a number."
    assert start.decorators == [] and start.foreach_param is None
    end = graph["end"]
    assert end.kind == "end" and end.out_funcs == [] and end.in_funcs == ["middle"]
    assert end.next_lineno == end.lineno == line_of(path, "def end(self):")
    assert "middle" in graph and "nope" not in graph
    assert [n.name for n in graph] == ["start", "middle", "end"]


def test_branch_in_funcs_and_foreach_param(load):
    assert FlowGraph(load("branch"))["join"].in_funcs == ["add", "multiply"]
    start = FlowGraph(load("foreach"))["start"]
    assert start.foreach_param == "items" and start.out_funcs == ["square"]


def test_to_text_of_a_foreach(load):
    assert FlowGraph(load("foreach")).to_text() == textwrap.dedent("""\
        ForeachFlow

        Step start
            ?
            foreach over items => square

        Step square
            ?
            => join

        Step join (join)
            ?
            => end

        Step end
            ?
        """)


# -- one fixture per rule ------------------------------------------------------------------

BAD_ISSUES = {
    "bad_unknown_target": [
        ("self.next(self.joni)", "step 'part' calls self.next(self.joni): there is no step 'joni'. "
         "Did you mean 'join'? Steps are: start, part, join, end."),
    ],
    "bad_next_to_method": [
        ("self.next(self.helper)", "step 'start' calls self.next(self.helper): there is no step 'helper'. "
         "Steps are: start, end."),
        ("def end(self):", "step 'end' is never reached from start. Call self.next(self.end) from a step, "
         "or remove it."),
    ],
    "bad_no_start": [
        ("class NoStartFlow", "the flow has no 'start' step. Add a @step method named start: the run begins there."),
    ],
    "bad_no_end": [
        ("class NoEndFlow", "the flow has no 'end' step. Add a @step method named end that does not call "
         "self.next: the run finishes there."),
        ("def finish(self):", "step 'finish' does not call self.next(...). End every step except 'end' with "
         "self.next(self.<next step>)."),
    ],
    "bad_end_calls_next": [
        ("self.next(self.report)", "step 'end' must not call self.next: the run finishes at end."),
        ("def report(self):", "step 'report' does not call self.next(...). End every step except 'end' with "
         "self.next(self.<next step>)."),
    ],
    "bad_missing_next": [
        ("def process(self):", "step 'process' does not call self.next(...). End every step except 'end' with "
         "self.next(self.<next step>)."),
        ("def end(self):", "step 'end' is never reached from start. Call self.next(self.end) from a step, "
         "or remove it."),
    ],
    "bad_join_no_inputs": [
        ("def join(self):", "step 'join' joins the branches of 'start' but takes no inputs. "
         "Write it as def join(self, inputs):"),
    ],
    "bad_inputs_not_join": [
        ("def process(self, inputs):", "step 'process' takes inputs but is not a join: only a step that several "
         "branches lead to gets inputs. Remove the inputs argument."),
    ],
    "bad_never_joined": [
        ('self.next(self.work, foreach="items")', "the branches that start at step 'a' are never joined. "
         "Make them meet in one step that takes inputs."),
    ],
    "bad_mixed_join": [
        ("def join(self, inputs):", "step 'join' joins branches of different splits: 'x' and 'y' from the split "
         "at 'a'; 'b' from the split at 'start'. Each split needs its own join: join the branches of 'a' in "
         "their own step first."),
    ],
    "bad_cycle": [
        (("def b(self):", 1), "steps 'a' -> 'b' -> 'a' form a cycle; a flow must be acyclic."),
        ("def end(self):", "step 'end' is never reached from start. Call self.next(self.end) from a step, "
         "or remove it."),
    ],
    "bad_unreachable": [
        ("def orphan(self):", "step 'orphan' is never reached from start. Call self.next(self.orphan) from a "
         "step, or remove it."),
    ],
    "bad_foreach_two_targets": [
        ('self.next(self.a, self.b, foreach="items")', "step 'start' calls self.next(self.a, self.b, "
         "foreach='items'): a foreach goes to exactly one step. Write self.next(self.a, foreach='items') and "
         "split inside that step if you need branches."),
    ],
    "bad_foreach_not_string": [
        ("foreach=self.items", "step 'start' calls self.next(self.part, foreach=self.items): foreach must be the "
         "name of a list attribute as a string, e.g. foreach=\"items\", not self.items."),
    ],
    "bad_next_not_last": [
        ("self.next(self.middle)", "step 'start' calls self.next(self.middle), but self.next(...) must be the "
         "step's last statement, outside any if, loop or try. Move it to the end of the step."),
        ("self.next(self.end)", "step 'middle' calls self.next(self.end), but self.next(...) must be the "
         "step's last statement, outside any if, loop or try. Move it to the end of the step."),
    ],
    "bad_reserved": [
        ('name = "my flow"', "attribute 'name' of ReservedFlow uses the reserved name 'name' (self.name is the "
         "flow's name). Rename it."),
        ("self.input = 3", "step 'start' sets self.input, but 'input' is reserved (self.input is the element a "
         "foreach task works on). Store it under another name."),
        ("def index(self):", "step 'index' uses the reserved name 'index' (self.index is the position of a "
         "foreach task). Rename the step."),
    ],
    "bad_three_problems": [
        ("self.next(self.a, self.b, self.extra)", "step 'start' calls self.next(self.a, self.b, self.extra): "
         "there is no step 'extra'. Steps are: start, a, b, join, leftover, end."),
        ("def join(self):", "step 'join' joins the branches of 'start' but takes no inputs. "
         "Write it as def join(self, inputs):"),
        ("def leftover(self):", "step 'leftover' is never reached from start. Call self.next(self.leftover) "
         "from a step, or remove it."),
    ],
}


def test_every_bad_fixture_has_its_expected_issues():
    assert sorted(BAD_ISSUES) == BAD


@pytest.mark.parametrize("name", sorted(BAD_ISSUES))
def test_bad_fixture_issues(load, name):
    path = FLOWS / f"{name}.py"
    expected = []
    for where, message in BAD_ISSUES[name]:
        text, offset = where if isinstance(where, tuple) else (where, 0)  # offset: lines below the text
        expected.append(Issue(shown(path), line_of(path, text) + offset, message))
    assert FlowGraph(load(name)).issues() == expected


@pytest.mark.parametrize("name", BAD)
def test_check_raises_graph_error_with_every_issue(load, name):
    graph = FlowGraph(load(name))  # building never raises
    with pytest.raises(GraphError) as err:
        graph.check()
    assert err.value.issues == graph.issues()
    assert str(graph.issues()[0]) in str(err.value)
    graph.to_text()
    graph.sorted_nodes()


def test_three_problems_reported_at_once(load):
    graph = FlowGraph(load("bad_three_problems"))
    assert len(graph.issues()) == 3
    assert {i.message.split(" ")[1] for i in graph.issues()} == {"'start'", "'join'", "'leftover'"}


def test_cycle_str_names_file_and_line(load):
    with pytest.raises(GraphError) as err:
        FlowGraph(load("bad_cycle")).check()
    path = FLOWS / "bad_cycle.py"
    line = line_of(path, "def b(self):") + 1
    assert f"{shown(path)}:{line}: steps 'a' -> 'b' -> 'a' form a cycle; a flow must be acyclic." in str(err.value)


# -- inline flows against the stand-in base ------------------------------------------------


def test_inherited_steps_and_overrides():
    class Base(FlowSpec):
        @step
        def start(self):
            self.next(self.middle)

        @step
        def middle(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    class Child(Base):
        @step
        def middle(self):  # child-middle
            self.next(self.extra)

        @step
        def extra(self):
            self.next(self.end)

    graph = FlowGraph(Child)
    assert graph.issues() == []
    assert list(graph.nodes) == ["start", "middle", "end", "extra"]
    assert graph.sorted_nodes() == ["start", "middle", "extra", "end"]
    assert graph["middle"].lineno == here("# child-middle", "").line
    assert graph.name == "Child"


def test_works_on_a_plain_class_without_a_base():
    class Plain:
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

        def helper(self):
            return 1

    assert list(FlowGraph(Plain).nodes) == ["start", "end"]


def test_decorators_and_docstrings_reach_nodes_and_text():
    class Decorated(FlowSpec):
        """Train a model.

        More words.
        """

        @resources(memory=2048, cpu=2)
        @retry(times=1, minutes_between_retries=0)
        @step
        def start(self):
            """Load the data.

            Second paragraph.
            """
            self.next(self.end)

        @step
        def end(self):
            pass

    graph = FlowGraph(Decorated)
    start = graph["start"]
    assert [d.name for d in start.decorators] == ["resources", "retry"]
    assert start.doc == "Load the data.\n\nSecond paragraph."
    text = graph.to_text()
    assert text.startswith("Decorated\n    Train a model.\n\nStep start\n    Load the data.\n")
    assert "    @resources(cpu=2, memory=2048, disk=10240, gpu=0)\n" in text
    assert "    @retry(times=1, minutes_between_retries=0)\n    => end\n" in text


def test_identical_next_in_both_branches_of_a_final_if_is_accepted():
    class IfElse(FlowSpec):
        @step
        def start(self):
            if 1 > 0:
                self.x = 1
                self.next(self.end)  # ifelse-first
            else:
                self.x = 2
                self.next(self.end)

        @step
        def end(self):
            pass

    graph = FlowGraph(IfElse)
    assert graph.issues() == []
    assert graph["start"].next_lineno == here("# ifelse-first", "").line
    assert graph["start"].out_funcs == ["end"]


def test_different_next_in_an_if_else_is_reported():
    class Conditional(FlowSpec):
        @step
        def start(self):
            if 1 > 0:
                self.next(self.a)  # cond-a
            else:
                self.next(self.b)  # cond-b

        @step
        def a(self):
            self.next(self.end)

        @step
        def b(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    rest = ("but self.next(...) must be the step's last statement, outside any if, loop or try. "
            "Move it to the end of the step.")
    issues = FlowGraph(Conditional).issues()
    assert here("# cond-a", f"step 'start' calls self.next(self.a), {rest}") in issues
    assert here("# cond-b", f"step 'start' calls self.next(self.b), {rest}") in issues


def test_bad_next_arguments():
    class BadArgs(FlowSpec):
        @step
        def start(self):
            self.next("a", self.a)  # args-string

        @step
        def a(self):
            self.next(self.b, bogus=1)  # args-keyword

        @step
        def b(self):
            self.next()  # args-empty

        @step
        def end(self, inputs, extra):  # args-many
            pass

    issues = FlowGraph(BadArgs).issues()
    assert here("# args-string", "step 'start' calls self.next('a', self.a): 'a' is not a step. Name each next "
                "step as self.<step>, e.g. self.next(self.train).") in issues
    assert here("# args-keyword", "step 'a' calls self.next(self.b, bogus=1): self.next takes no argument "
                "bogus=.... Its arguments are the next steps and, for a foreach, foreach=\"attr\".") in issues
    assert here("# args-empty", "step 'b' calls self.next() without a next step. Name it: "
                "self.next(self.<next step>).") in issues
    assert here("# args-many", "step 'end' takes 2 arguments after self: a step takes only self, and a join "
                "self and inputs. Remove the others.") in issues


def test_duplicate_branch_and_a_join_that_misses_a_branch():
    class Partial(FlowSpec):
        @step
        def start(self):
            self.next(self.a, self.a)  # dup-branch

        @step
        def end(self):
            pass

        @step
        def a(self):
            self.next(self.end)

    issues = FlowGraph(Partial).issues()
    assert here("# dup-branch", "step 'start' calls self.next(self.a, self.a): step 'a' is named more than once. "
                "Name each branch once.") in issues

    class Missing(FlowSpec):
        @step
        def start(self):
            self.next(self.a, self.b, self.c)

        @step
        def a(self):
            self.next(self.join)

        @step
        def b(self):
            self.next(self.join)

        @step
        def c(self):
            self.next(self.join2)

        @step
        def join(self, inputs):  # partial-join
            self.next(self.join2)

        @step
        def join2(self, inputs):
            self.next(self.end)

        @step
        def end(self):
            pass

    issues = FlowGraph(Missing).issues()
    assert here("# partial-join", "step 'join' is reached from 2 step(s) ('a' and 'b'), but the split at step "
                "'start' has 3 branches ('a', 'b' and 'c'). Make every branch of 'start' end in 'join'.") in issues


def test_end_may_be_the_join_and_a_self_loop_is_a_cycle():
    class EndJoins(FlowSpec):
        @step
        def start(self):
            self.next(self.a, self.b)

        @step
        def a(self):
            self.next(self.end)

        @step
        def b(self):
            self.next(self.end)

        @step
        def end(self, inputs):
            pass

    graph = FlowGraph(EndJoins)
    assert graph.issues() == []
    assert graph["start"].matching_join == "end"

    class Loop(FlowSpec):
        @step
        def start(self):
            self.next(self.start)  # self-loop

        @step
        def end(self):
            pass

    issues = FlowGraph(Loop).issues()
    assert here("# self-loop", "steps 'start' -> 'start' form a cycle; a flow must be acyclic.") in issues


def test_start_with_inputs_is_not_a_join():
    class StartJoin(FlowSpec):
        @step
        def start(self, inputs):  # start-inputs
            self.next(self.end)

        @step
        def end(self):
            pass

    assert FlowGraph(StartJoin).issues() == [
        here("# start-inputs", "step 'start' takes inputs but is not a join: only a step that several branches "
             "lead to gets inputs. Remove the inputs argument.")]


def test_a_flow_without_source_is_reported_not_raised():
    namespace = {"step": step}
    exec(textwrap.dedent("""
        class NoSource:
            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
    """), namespace)
    graph = FlowGraph(namespace["NoSource"])
    messages = [i.message for i in graph.issues()]
    assert "cannot read the source of step 'start', so its self.next(...) is unknown. Define the flow in a .py " \
           "file." in messages


def test_paths_are_relative_under_the_current_directory_else_absolute(load, monkeypatch, tmp_path):
    cls = load("linear")
    monkeypatch.chdir(FLOWS.parent)
    assert FlowGraph(cls)["start"].file == os.path.join("flows", "linear.py")
    monkeypatch.chdir(tmp_path)
    assert FlowGraph(cls)["start"].file == str(FLOWS / "linear.py")
