"""The code fingerprint of a step: what changes it, and what does not."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import textwrap
from pathlib import Path

import pytest

from keel.runtime.fingerprint import step_fingerprint

_n = itertools.count()

BASE = '''
from keel import FlowSpec, step, resources, retry
import helpers

SCALE = 3
WORDS = ("a", "b")


def double(x):
    return helpers.twice(x) * 1


def unused():
    return 42


class Flow(FlowSpec):
    @resources(cpu=1)
    @step
    def start(self):
        """Docstring."""
        # a comment
        self.x = double(SCALE) + len(WORDS)
        self.next(self.end)

    @step
    def end(self):
        pass
'''

HELPERS = '''
def twice(x):
    return inner(x) * 2


def inner(x):
    return x + 0
'''


def load(tmp_path: Path, flow_src: str, helpers_src: str = HELPERS):
    tag = f"t{next(_n)}"
    folder = tmp_path / tag
    folder.mkdir()
    (folder / "helpers.py").write_text(helpers_src)
    (folder / "flow.py").write_text(flow_src)
    sys.path.insert(0, str(folder))
    sys.modules.pop("helpers", None)
    try:
        spec = importlib.util.spec_from_file_location("flow", folder / "flow.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("helpers", None)
    cls = mod.Flow
    from keel.flow.decorators import step_decorators

    return step_fingerprint(cls, "start", step_decorators(cls.start))


def parts(tmp_path, src=BASE, helpers=HELPERS):
    fp = load(tmp_path, src, helpers)
    assert fp.cacheable, fp.reason
    return fp.parts


def test_the_same_source_gives_the_same_fingerprint(tmp_path):
    assert parts(tmp_path) == parts(tmp_path)


@pytest.mark.parametrize("edit", [
    lambda s: s.replace("# a comment", "# another comment\n        # more"),
    lambda s: s.replace('"""Docstring."""', '"""Another docstring, longer."""'),
    lambda s: s.replace("double(SCALE) + len(WORDS)", "double( SCALE )+len( WORDS )"),
    lambda s: s.replace("@resources(cpu=1)", "@resources(cpu=2)"),
    lambda s: s.replace("return 42", "return 43"),  # a function the step does not reach
])
def test_edits_that_do_not_change_results_keep_the_key(tmp_path, edit):
    assert parts(tmp_path, edit(BASE)) == parts(tmp_path)


@pytest.mark.parametrize("edit,part", [
    (lambda s: s.replace("+ len(WORDS)", "- len(WORDS)"), "code"),
    (lambda s: s.replace("* 1", "* 2"), "code"),               # a helper one call deep
    (lambda s: s.replace("SCALE = 3", "SCALE = 4"), "globals"),
    (lambda s: s.replace('("a", "b")', '("a", "c")'), "globals"),
    (lambda s: s.replace("def double(x):", "def double(x=5):"), "code"),
])
def test_edits_that_change_results_change_the_key(tmp_path, edit, part):
    a, b = parts(tmp_path), parts(tmp_path, edit(BASE))
    assert a[part] != b[part]


def test_a_helper_two_calls_deep_in_another_module_changes_the_key(tmp_path):
    a = parts(tmp_path)
    b = parts(tmp_path, helpers=HELPERS.replace("x + 0", "x + 1"))
    assert a["code"] != b["code"]


def test_default_argument_values_change_the_key(tmp_path):
    src = BASE.replace("def double(x):", "def double(x, k=1):")
    assert parts(tmp_path, src)["globals"] != parts(tmp_path, src.replace("k=1", "k=2"))["globals"]


def test_closure_values_change_the_key(tmp_path):
    src = BASE.replace("SCALE = 3\n", "SCALE = 3\n\ndef make(k):\n    def f(x):\n        return x * k\n    return f\n\nmul = make(2)\n")
    src = src.replace("double(SCALE)", "mul(SCALE)")
    assert parts(tmp_path, src)["globals"] != parts(tmp_path, src.replace("make(2)", "make(3)"))["globals"]


def test_decorator_settings_that_change_results_change_the_key(tmp_path):
    a = parts(tmp_path, BASE.replace("@resources(cpu=1)", "@retry(times=1)"))
    b = parts(tmp_path, BASE.replace("@resources(cpu=1)", "@retry(times=2)"))
    assert a == b  # @retry does not change results
    from keel.flow.decorators import environment  # noqa: F401 - the decorator exists
    c = parts(tmp_path, BASE.replace("@resources(cpu=1)", '@environment(vars={"A": "1"})').replace(
        "resources, retry", "resources, retry, environment"))
    d = parts(tmp_path, BASE.replace("@resources(cpu=1)", '@environment(vars={"A": "2"})').replace(
        "resources, retry", "resources, retry, environment"))
    assert c["decorators"] != d["decorators"]


def test_package_versions_are_part_of_the_key(tmp_path):
    src = BASE.replace("import helpers", "import helpers\nimport numpy as np")
    src = src.replace("len(WORDS)", "int(np.sum([1]))")
    fp = load(tmp_path, src)
    assert "numpy" in fp.packages and fp.packages["numpy"].startswith("numpy==")


def test_a_value_without_a_stable_fingerprint_disables_caching_and_names_it(tmp_path):
    src = BASE.replace("SCALE = 3", "import threading\nSCALE = 3\nLOCK = threading.Lock()")
    src = src.replace("double(SCALE)", "double(SCALE) + bool(LOCK)")
    fp = load(tmp_path, src)
    assert not fp.cacheable
    assert "LOCK" in fp.reason


def test_fingerprints_are_memoised(tmp_path):
    """The memo is per class: asking again returns what was computed (the cost of a key, under
    2 ms after the first, is measured by `make bench`)."""
    tag_fp = load(tmp_path, BASE)
    assert tag_fp.cacheable
    from keel.runtime import fingerprint as f

    cls = next(iter(f._MEMO.keys()))
    assert step_fingerprint(cls, "start") is step_fingerprint(cls, "start")
