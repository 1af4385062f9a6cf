"""Where steps run and what they ask for: --with parsing, @ray/@kubernetes, resource precedence.

Pure: no cluster, no store. The executors themselves are tested in tests/runtime/executors/.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from keel import FlowSpec, kubernetes, ray, resources, step
from keel.errors import DefinitionError, UsageError
from keel.flow.graph import FlowGraph
from keel.runtime.placement import parse_with, plan_placement


class Shapes(FlowSpec):
    @resources(cpu=2, memory=8000)
    @step
    def start(self):
        self.next(self.train)

    @ray(gpu=1, resources={"a100": 1})
    @resources(cpu=4, memory=16000)
    @step
    def train(self):
        self.next(self.score)

    @kubernetes(cpu=3, image="me/keel:1", namespace="ml")
    @step
    def score(self):
        self.next(self.end)

    @step
    def end(self):
        pass


def test_with_options_are_parsed_and_checked() -> None:
    assert parse_with("ray") .options == {}
    spec = parse_with("ray:address=10.0.0.5:6379,cpu=4,memory=10000")
    assert (spec.name, spec.options) == ("ray", {"address": "10.0.0.5:6379", "cpu": 4.0, "memory": 10000.0})
    assert parse_with("k8s:image=a/b:1").name == "kubernetes"
    for text, message in [
        ("rayy", "--with rayy: unknown executor 'rayy'; available: kubernetes, ray"),
        ("ray:foo=1", "--with ray:foo=1: ray has no option 'foo'; its options are: address, cpu, memory, gpu"),
        ("ray:cpu=x", "--with ray:cpu=x: cpu expects a number, got 'x'"),
        ("ray:cpu", "--with ray:cpu: 'cpu' is not key=value (e.g. --with ray:cpu=2)"),
        ("ray:cpu=-1", "--with ray:cpu=-1: cpu must be at least 0, got -1"),
    ]:
        with pytest.raises(UsageError) as info:
            parse_with(text)
        assert str(info.value) == message


def test_decorators_route_single_steps_and_the_rest_stays_local() -> None:
    plan = plan_placement(FlowGraph(Shapes), [])
    assert plan.route == {"train": "ray", "score": "kubernetes"}
    assert plan.remote_steps == frozenset({"train", "score"})
    # @ray's values win; what it does not say comes from @resources
    assert plan.requests["train"] == {"cpu": 4, "memory": 16000, "gpu": 1, "resources": {"a100": 1.0}}
    score = plan.requests["score"]
    assert (score["cpu"], score["memory"], score["image"], score["namespace"]) == (3, 4096, "me/keel:1", "ml")


def test_with_ray_sends_every_other_step_and_raises_resources() -> None:
    plan = plan_placement(FlowGraph(Shapes), ["ray:cpu=3,address=h:1"])
    assert plan.route == {"start": "ray", "train": "ray", "score": "kubernetes", "end": "ray"}
    assert plan.ray_address == "h:1"
    assert plan.requests["start"]["cpu"] == 3       # the larger of @resources(cpu=2) and cpu=3
    assert plan.requests["end"] == {"cpu": 3, "memory": None, "gpu": 0}
    assert plan.requests["train"]["cpu"] == 4        # @resources(cpu=4) is larger


def test_two_executors_for_a_run_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^--with kubernetes and --with ray: a run goes to one executor; pick one"):
        plan_placement(FlowGraph(Shapes), ["ray", "kubernetes"])


def test_both_decorators_on_one_step_are_reported_with_file_and_line() -> None:
    class Both(FlowSpec):
        @ray
        @kubernetes
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    with pytest.raises(DefinitionError, match=r"test_placement.py:\d+: step 'start' has both @ray and @kubernetes; "
                                              r"keep one"):
        plan_placement(FlowGraph(Both), [])


def test_importing_keel_and_planning_does_not_import_ray_or_kubernetes() -> None:
    code = ("import sys; from keel.runtime.placement import plan_placement; import keel.runtime.launch; "
            "print([m for m in ('ray', 'kubernetes', 'boto3') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
