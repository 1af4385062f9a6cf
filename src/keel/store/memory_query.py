"""The in-memory fake of ``RunQuery``: the ``--where``/``--sort`` language evaluated in Python
with SQL's three-valued logic (a missing metric is unknown, and ``not unknown`` is unknown),
so it answers as the SQL implementation does (tests/store/test_contract.py)."""

from __future__ import annotations

import json
import time
from typing import Any

from keel.store.querylang import BoolOp, Compare, Field, In, Not, Query, _Compiler
from keel.store.records import RunPage, RunRecord


class MemoryRunQuery:
    def __init__(self, runs: Any, metrics: Any):
        self.runs, self.metrics = runs, metrics

    def search_runs(self, *, flow: str | None = None, where: str | None = None, sort: str | None = None,
                    limit: int | None = None, offset: int = 0, query: Query | None = None) -> list[RunRecord]:
        query = query or Query(where, sort)
        now = time.time()
        ev = _Eval(query.where_text or "", now, self.metrics, self.runs)
        records: list[RunRecord] = list(self.runs.list_runs(flow))  # newest first: the tie-break order
        if query.where is not None:
            records = [r for r in records if ev.test(query.where, r) is True]
        for key in reversed(query.sort):
            present = [r for r in records if ev.sort_value(key.field, r) is not None]
            missing = [r for r in records if ev.sort_value(key.field, r) is None]
            present.sort(key=lambda r: ev.sort_value(key.field, r), reverse=key.descending)
            records = present + missing
        return records[offset:offset + limit if limit else None]

    def count_runs(self, flow: str | None = None, where: str | None = None, *, query: Query | None = None) -> int:
        return len(self.search_runs(flow=flow, where=where, query=query))

    def search_page(self, *, flow: str | None = None, limit: int = 50, offset: int = 0,
                    query: Query | None = None) -> RunPage:
        found = self.search_runs(flow=flow, query=query or Query())
        return RunPage(runs=found[offset:offset + limit], total=len(found))


def _and(values: list[bool | None]) -> bool | None:
    return False if False in values else (None if None in values else True)


def _or(values: list[bool | None]) -> bool | None:
    return True if True in values else (None if None in values else False)


def _cmp(a: Any, op: str, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return bool({"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Eval:
    def __init__(self, text: str, now: float, metrics: Any, runs: Any = None):
        self.compiler = _Compiler(text, now)
        self.now, self.metrics, self.runs = now, metrics, runs
        self._last: dict[tuple[str, int], dict[str, float]] = {}

    def last(self, r: RunRecord) -> dict[str, float]:
        key = (r.flow, r.run_id)
        if key not in self._last:
            self._last[key] = self.metrics.last_values(r.flow, r.run_id)
        return self._last[key]

    def simple(self, f: Field, r: RunRecord) -> Any:
        if f.kind == "duration":
            return None if r.finished_at is None else r.finished_at - r.created_at
        return {"created": r.created_at, "finished": r.finished_at, "user": r.user, "id": r.run_id,
                "status": r.status}[f.kind]

    def status_is(self, r: RunRecord, value: str) -> bool:
        return r.effective_status == value if value in ("running", "crashed") else r.status == value

    def param_match(self, r: RunRecord, name: str, op: str, value: Any) -> bool:
        if name not in r.params:
            return False
        v = r.params[name]
        if _number(value):
            return bool(_cmp(float(v), op, value)) if _number(v) else False
        return bool(_cmp(json.dumps(v), op, json.dumps(value)))

    def test(self, node: Any, r: RunRecord) -> bool | None:
        if isinstance(node, BoolOp):
            parts = [self.test(i, r) for i in node.items]
            return _and(parts) if node.op == "and" else _or(parts)
        if isinstance(node, Not):
            inner = self.test(node.item, r)
            return None if inner is None else not inner
        if isinstance(node, In):
            result = _or([self.test(Compare(node.field, "=", v, node.col), r) for v in node.values]) \
                if node.field.kind not in ("tags", "params") else \
                any(self.test(Compare(node.field, "=", v, node.col), r) for v in node.values)
            return (None if result is None else not result) if node.negate else result
        f, op, value = node.field, node.op, node.value
        if f.kind == "params":
            return self.param_match(r, f.name, op, value)
        if f.kind == "metrics":
            return _cmp(self.last(r).get(f.name), op, value)
        if f.kind == "tags":
            # user and system tags alike (a namespace is a system tag), as the SQL query does
            have = self.runs.tag_kinds_of(r.flow, r.run_id) if self.runs is not None else r.tags
            return bool((value in have) == (op == "="))
        if f.kind == "status":
            return bool(self.status_is(r, value) == (op == "="))
        if f.kind in ("created", "finished"):
            return _cmp(self.simple(f, r), op, self.compiler.timestamp(value, node.col, f))
        return _cmp(self.simple(f, r), op, value)

    def sort_value(self, f: Field, r: RunRecord) -> Any:
        if f.kind == "params":
            v = r.params.get(f.name)
            return None if v is None else ((0, float(v), "") if _number(v) else (1, 0.0, json.dumps(v)))
        if f.kind == "metrics":
            return self.last(r).get(f.name)
        return self.simple(f, r)
