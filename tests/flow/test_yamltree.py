"""keel.yaml's reader: YAML 1.2 scalars, lines of keys and items, duplicate keys, merges, aliases."""

from __future__ import annotations

import datetime
import math

import pytest

from keel.flow.yamltree import YamlTreeError, load_tree

SCALARS = [
    ("yes", "yes"), ("on", "on"), ("1:30", "1:30"), ("tRue", "tRue"),        # YAML 1.1's surprises stay text
    ("true", True), ("False", False), ("~", None), ("null", None), ("", None),
    ("0o17", 15), ("017", 17), ("1_000", 1000), ("0x1F", 31), ("0b101", 5), ("-0o7", -7), ("+1", 1),
    ("1e3", 1000.0), ("1.", 1.0), (".5", 0.5), ("1_0.5", 10.5), ("-.inf", -math.inf),
    ("2024-01-01", datetime.date(2024, 1, 1)), ("2024-01-01 10:00:00", datetime.datetime(2024, 1, 1, 10)),
    ("'7'", "7"), ('"true"', "true"), ("!!str 5", "5"), ("python train.py --n 3", "python train.py --n 3"),
]


@pytest.mark.parametrize(("text", "value"), SCALARS)
def test_scalars_follow_yaml_1_2(text, value):
    assert load_tree(f"a: {text}\n")["a"] == value
    assert type(load_tree(f"a: {text}\n")["a"]) is type(value)


def test_nan_is_a_float():
    assert math.isnan(load_tree("a: .nan\n")["a"])


def test_keys_and_items_know_their_lines():
    tree = load_tree("name: p\njobs:\n  - name: a\n    entrypoint: echo\n  - name: b\n")
    assert tree.lc.key("jobs")[0] == 1
    assert [tree["jobs"].lc.item(i)[0] for i in range(2)] == [2, 4]
    assert tree["jobs"][0].lc.key("entrypoint")[0] == 3


def test_a_key_written_twice_is_refused_with_both_lines():
    with pytest.raises(YamlTreeError) as exc:
        load_tree("name: p\njobs: []\nname: q\n")
    assert exc.value.line == 3 and "'name' appears twice" in exc.value.message and "line 1" in exc.value.message


def test_a_merge_key_fills_what_the_mapping_does_not_say():
    tree = load_tree("base: &b {retries: 2, timeout: 5m}\njob:\n  <<: *b\n  timeout: 1h\n")
    assert tree["job"] == {"retries": 2, "timeout": "1h"}
    assert tree["job"].lc.key("retries")[0] == 0  # where the merged value is written


def test_an_alias_is_one_shared_object():
    tree = load_tree("a: &x [1, 2]\nb: *x\n")
    assert tree["a"] is tree["b"]


def test_a_syntax_error_names_its_line():
    with pytest.raises(YamlTreeError) as exc:
        load_tree("name: p\njobs:\n  - name: a\n   entrypoint: [\n")
    assert exc.value.line >= 4 and exc.value.message.startswith("this is not valid YAML")
