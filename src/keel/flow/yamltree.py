"""YAML text as plain dicts and lists that remember the line of every key and item.

keel.yaml is read through libyaml's C parser (PyYAML's ``CBaseLoader``): a 20,000-job file
composes in well under a second, where a pure-Python round-trip loader took minutes. Scalars
are resolved by the YAML 1.2 core schema (``yes``/``on`` stay strings, ``1:30`` too; ``0o17``,
``1_000``, ``.inf``, ``~``, ``2024-01-01`` are what YAML 1.2 says), keys may appear once per
mapping, ``<<: *base`` merges, and aliases stay shared objects (so the caller can measure what
an alias bomb would expand to without expanding it).

Each mapping and list carries ``.lc`` with ``line`` (0-based, of its first token),
``key(k)`` and ``item(i)`` (``(line, column)``, 0-based), the interface ruamel.yaml gives.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

from keel.errors import YamlTreeError

__all__ = ["YamlTreeError", "load_tree"]

_PLAIN = "!keel:plain"  # the tag of a plain (unquoted, untagged) scalar, resolved here
_STR, _INT, _FLOAT, _BOOL, _NULL, _MAP, _SEQ = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool",
                                                                                  "null", "map", "seq"))
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = {"", "~", "null", "Null", "NULL"}
_INT_RE = re.compile(r"[-+]?(?:0b[0-1_]+|0o?[0-7_]+|[0-9_]+|0x[0-9a-fA-F_]+)")
_FLOAT_RE = re.compile(r"""[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                           |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                           |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?""", re.X)
_SPECIAL_FLOATS = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf, "+.Inf": math.inf,
                   "+.INF": math.inf, "-.inf": -math.inf, "-.Inf": -math.inf, "-.INF": -math.inf,
                   ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan}
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?"
                           r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?")


class _Lines:
    """Where a mapping's keys or a list's items are (0-based line, column), as ruamel's ``.lc``."""

    __slots__ = ("line", "col", "_at")

    def __init__(self, line: int, col: int):
        self.line = line
        self.col = col
        self._at: dict[Any, tuple[int, int]] = {}

    def key(self, key: Any) -> tuple[int, int]:
        return self._at[key]

    def item(self, index: int) -> tuple[int, int]:
        return self._at[index]


class Mapping(dict):  # type: ignore[type-arg]
    """A YAML mapping: a dict with ``.lc``."""

    lc: _Lines


class Sequence(list):  # type: ignore[type-arg]
    """A YAML list: a list with ``.lc``."""

    lc: _Lines


def load_tree(text: str) -> Any:
    """The one document in ``text`` (None when empty); raises YamlTreeError with the line."""
    import yaml

    base: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # libyaml when PyYAML has it

    class _Loader(base):  # type: ignore[misc]
        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is yaml.ScalarNode and implicit[0]:
                return _PLAIN
            return super().resolve(kind, value, implicit)

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise YamlTreeError(mark.line + 1 if mark is not None else 1,
                            f"this is not valid YAML: {what}; check the indentation and the colons near this line") \
            from None
    except yaml.YAMLError as exc:
        raise YamlTreeError(1, f"this is not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if node is None:
        return None
    return _Builder().build(node)


class _Builder:
    def __init__(self) -> None:
        self.done: dict[int, Any] = {}  # an alias is the same node: built once, shared

    def build(self, node: Any) -> Any:
        import yaml

        key = id(node)
        if key in self.done:
            return self.done[key]
        if isinstance(node, yaml.ScalarNode):
            value = _scalar(node)
            self.done[key] = value
            return value
        mark = node.start_mark
        if isinstance(node, yaml.SequenceNode):
            seq = Sequence()
            seq.lc = _Lines(mark.line, mark.column)
            self.done[key] = seq
            for i, child in enumerate(node.value):
                seq.lc._at[i] = (child.start_mark.line, child.start_mark.column)
                seq.append(self.build(child))
            return seq
        out = Mapping()
        out.lc = _Lines(mark.line, mark.column)
        self.done[key] = out
        merges: list[Any] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag in (_PLAIN, "tag:yaml.org,2002:merge") \
                    and key_node.value == "<<":
                merges.append(value_node)
                continue
            name = self.build(key_node)
            if isinstance(name, list):
                name = tuple(name)
            if isinstance(name, dict):
                raise YamlTreeError(key_node.start_mark.line + 1, "a mapping is used as a key; keys are plain "
                                                                  "names such as jobs or name")
            if name in out:
                first = out.lc._at[name][0] + 1
                raise YamlTreeError(key_node.start_mark.line + 1, f"the key {str(name)[:40]!r} appears twice in "
                                                                  f"one mapping (first on line {first}); keep one")
            out.lc._at[name] = (key_node.start_mark.line, key_node.start_mark.column)
            out[name] = self.build(value_node)
        for merge in merges:  # `<<: *base` or `<<: [*a, *b]`: keys written here win, then the first source
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in sources:
                built = self.build(source)
                if not isinstance(built, Mapping):
                    raise YamlTreeError(merge.start_mark.line + 1, "<< merges a mapping (or a list of mappings) "
                                                                   "into this one")
                for name, value in built.items():
                    if name not in out:
                        out.lc._at[name] = built.lc._at[name]
                        out[name] = value
        return out


def _scalar(node: Any) -> Any:
    value: str = node.value
    tag = node.tag
    if tag == _PLAIN:
        return _resolve_plain(value)
    if tag == _INT or tag == _FLOAT or tag == _BOOL or tag == _NULL:
        resolved = _resolve_plain(value)
        return value if isinstance(resolved, str) else resolved
    return value  # quoted, !!str, or a tag Keel does not know: the text


def _resolve_plain(value: str) -> Any:
    """A plain scalar by the YAML 1.2 core schema (with ruamel.yaml's underscores and timestamps)."""
    if value in _NULLS:
        return None
    first = value[0]
    if first in "tTfF" and value in _BOOLS:
        return _BOOLS[value]
    if first not in "-+0123456789.":
        return value
    if value in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[value]
    if _INT_RE.fullmatch(value):
        return _int(value)
    if _FLOAT_RE.fullmatch(value):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    if _DATE_RE.fullmatch(value):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return value
    if _TIMESTAMP_RE.fullmatch(value):
        try:
            return datetime.datetime.fromisoformat(re.sub(r"[ \t]+", " ", value.replace("Z", "+00:00")))
        except ValueError:
            return value
    return value


def _int(value: str) -> Any:
    text = value.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if not digits:
        return value
    for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
        if digits.startswith(prefix):
            return sign * int(digits[2:] or "0", base) if digits[2:] else value
    return sign * int(digits, 10)
