"""The run search language: small, safe, compiled to SQL (never ``eval``). Part of the store:
only ``keel.store`` writes SQL; ``keel.store.search.SqlRunQuery`` runs it.

    params.alpha > 0.3 and metrics.acc >= 0.9
    status = "succeeded" and not ("baseline" in tags)
    params.optimizer in ("adam", "sgd") or duration < 2m
    created >= "2024-05-01" and metrics.`val loss` < 0.1

Grammar (keywords are case-insensitive)::

    query      := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" or_expr ")" | comparison
    comparison := field OP value | value OP field
                | field ["not"] "in" "(" value ("," value)* ")"
                | STRING ["not"] "in" "tags"
    OP         := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
    value      := NUMBER [unit] | STRING | "true" | "false" | "null"

Fields: ``params.NAME`` (a run parameter), ``metrics.NAME`` (the metric's last value;
names may hold dots, e.g. ``metrics.sys.rss_mb``; quote odd names with backticks),
``tags``, ``status`` (``crashed`` included), ``duration`` (seconds; ``90s``, ``2m``,
``1.5h``, ``1d`` also read), ``created`` and ``finished`` (UNIX seconds or an ISO date
such as ``"2024-05-01"`` or ``"2024-05-01 13:00"``), ``user``, ``id``.

Sort keys (``--sort``): a comma-separated list of fields, ``-`` before one for descending
(``-metrics.acc,created``); runs without the value come last.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable

from keel.errors import QueryError

__all__ = ["Query", "parse", "parse_sort", "FIELDS"]

FIELDS = ("params.NAME", "metrics.NAME", "tags", "status", "duration", "created", "finished", "user", "id")
_SIMPLE = {"tags", "status", "duration", "created", "finished", "user", "id"}
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?P<unit>ms|s|m|h|d)?(?![A-Za-z0-9_])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z0-9_][A-Za-z0-9_\-]*|`[^`]+`)(?:\.[A-Za-z0-9_][A-Za-z0-9_\-]*)*)?)
  | (?P<op>==|!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str      # number, string, field, keyword, op, punct, end
    text: str
    value: Any
    col: int       # 1-based


@dataclass(frozen=True)
class Field:
    kind: str      # params, metrics, or one of _SIMPLE
    name: str      # the parameter or metric name ("" for simple fields)
    col: int

    def __str__(self) -> str:
        return f"{self.kind}.{self.name}" if self.name else self.kind


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: Any
    col: int


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Any, ...]
    negate: bool
    col: int


@dataclass(frozen=True)
class BoolOp:
    op: str        # and, or
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    item: Any


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "\"'":
                raise QueryError(f"the string that starts here is never closed; end it with {ch}", text, pos + 1)
            if ch == "`":
                raise QueryError("backticks quote a name after a dot, e.g. metrics.`val loss`", text, pos + 1)
            raise QueryError(f"unexpected character {ch!r}", text, pos + 1)
        kind = m.lastgroup
        col = pos + 1
        pos = m.end()
        if kind == "ws":
            continue
        if m.group("number") is not None:
            value = float(m.group("number"))
            unit = m.group("unit")
            if unit:
                value *= _UNITS[unit]
            elif value.is_integer() and re.fullmatch(r"[-+]?\d+", m.group("number")) and -2**63 <= value < 2**63:
                value = int(value)  # beyond a 64-bit column it stays a float: bound as REAL, compared as one
            tokens.append(Token("number", m.group(0), value, col))
        elif kind == "string":
            raw = m.group("string")
            tokens.append(Token("string", raw, _unquote(raw), col))
        elif kind == "field":
            word = m.group("field")
            if word.lower() in _KEYWORDS:
                tokens.append(Token("keyword", word, word.lower(), col))
            else:
                tokens.append(Token("field", word, word, col))
        else:
            tokens.append(Token(kind or "punct", m.group(0), m.group(0), col))
    tokens.append(Token("end", "", None, len(text) + 1))
    return tokens


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _describe(tok: Token) -> str:
    return "the end of the query" if tok.kind == "end" else repr(tok.text)


MAX_DEPTH = 50      # nested parentheses and 'not's: deeper queries are refused, not a RecursionError
MAX_TERMS = 500     # comparisons in one query (each is a subquery: SQL engines limit the tree)
MAX_VALUES = 1000   # values in one 'in (...)' list
MAX_LENGTH = 20_000  # characters


class _Parser:
    """Recursive descent over the tokens; every error names the column of the token at fault."""

    def __init__(self, text: str):
        if len(text) > MAX_LENGTH:
            raise QueryError(f"the query is {len(text):,} characters long; at most {MAX_LENGTH:,} are read. "
                             f"Search with fewer conditions, or use tags (\"baseline\" in tags)")
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.terms = 0

    def deeper(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"the query nests more than {MAX_DEPTH} levels of '(' and 'not' here; "
                            f"write it flatter", tok)

    def counted(self, node: Any, tok: Token) -> Any:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(f"the query has more than {MAX_TERMS} comparisons; for many values of one "
                            f"field use 'in', e.g. params.seed in (1, 2, 3)", tok)
        return node

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, message: str, tok: Token | None = None) -> QueryError:
        return QueryError(message, self.text, (tok or self.tok).col)

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.value == word

    def parse(self) -> Any:
        if self.tok.kind == "end":
            raise self.fail("the query is empty; e.g. --where \"params.alpha > 0.3\"")
        node = self.or_expr()
        if self.tok.kind != "end":
            if self.tok.text == ")":
                raise self.fail("this ')' closes nothing")
            raise self.fail(f"expected 'and', 'or' or the end of the query, found {_describe(self.tok)}")
        return node

    def or_expr(self) -> Any:
        items = [self.and_expr()]
        while self.is_kw("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> Any:
        items = [self.not_expr()]
        while self.is_kw("and"):
            self.take()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_expr(self) -> Any:
        if self.is_kw("not"):
            self.deeper(self.take())
            node = Not(self.not_expr())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Any:
        tok = self.tok
        if tok.text == "(" and tok.kind == "punct":
            self.deeper(self.take())
            node = self.or_expr()
            if self.tok.text != ")":
                raise self.fail(f"expected ')' to close the '(' at column {tok.col}, found {_describe(self.tok)}")
            self.take()
            self.depth -= 1
            return node
        if tok.kind == "field":
            return self.counted(self.comparison_from_field(self.field()), tok)
        if tok.kind in ("number", "string") or (tok.kind == "keyword" and tok.value in ("true", "false", "null")):
            value = self.value()
            return self.counted(self.comparison_from_value(value, tok), tok)
        if tok.kind == "end":
            raise self.fail("the query ends too early: expected a comparison such as params.alpha > 0.3")
        raise self.fail(f"expected a field (params.NAME, metrics.NAME, tags, status, ...), found {_describe(tok)}")

    def field(self) -> Field:
        tok = self.take()
        head, dot, rest = tok.text.partition(".")
        head_l = head.lower()
        if head_l in ("params", "param", "metrics", "metric") and dot and rest:
            name = rest[1:-1] if rest.startswith("`") and rest.endswith("`") else rest.replace("`", "")
            return Field("params" if head_l.startswith("param") else "metrics", name, tok.col)
        if head_l in ("params", "metrics") and not dot:
            raise self.fail(f"{head} needs a name: {head}.NAME, e.g. {head}.alpha", tok)
        if not dot and head_l in _SIMPLE:
            return Field(head_l, "", tok.col)
        if not dot and head_l in ("tag",):
            return Field("tags", "", tok.col)
        import difflib

        guess = difflib.get_close_matches(head_l, ["params", "metrics", *_SIMPLE], n=1)
        if guess:
            hint = f" Did you mean {guess[0]}{'.' + rest if rest and guess[0] in ('params', 'metrics') else ''}?"
        elif not dot:
            hint = f" Did you mean params.{tok.text} or metrics.{tok.text}?"
        else:
            hint = ""
        raise self.fail(f"unknown field {tok.text!r}.{hint} Fields are: {', '.join(FIELDS)}", tok)

    def value(self) -> Any:
        tok = self.tok
        if tok.kind in ("number", "string"):
            self.take()
            return tok.value
        if tok.kind == "keyword" and tok.value in ("true", "false", "null"):
            self.take()
            return {"true": True, "false": False, "null": None}[tok.value]
        if tok.kind == "field":
            raise self.fail(f"expected a value (a number or a quoted string), found the name {tok.text!r}; "
                            f"quote text: \"{tok.text}\"")
        raise self.fail(f"expected a value (a number or a quoted string), found {_describe(tok)}")

    def comparison_from_field(self, field: Field) -> Any:
        tok = self.tok
        if tok.kind == "op":
            self.take()
            return Compare(field, _OPS[tok.text], self.value(), field.col)
        negate = False
        if self.is_kw("not"):
            self.take()
            negate = True
            if not self.is_kw("in"):
                raise self.fail(f"expected 'in' after 'not', found {_describe(self.tok)}")
        if self.is_kw("in"):
            self.take()
            return In(field, self.value_list(), negate, field.col)
        raise self.fail(f"expected a comparison (=, !=, <, <=, >, >=, in) after {str(field)!r}, "
                        f"found {_describe(tok)}")

    def value_list(self) -> tuple[Any, ...]:
        if self.tok.text != "(":
            raise self.fail(f"expected '(' to start a list of values, e.g. in (1, 2), found {_describe(self.tok)}")
        self.take()
        values = [self.value()]
        while self.tok.text == ",":
            if len(values) >= MAX_VALUES:
                raise self.fail(f"a list of values holds at most {MAX_VALUES}; split the search")
            self.take()
            values.append(self.value())
        if self.tok.text != ")":
            raise self.fail(f"expected ',' or ')' in the list of values, found {_describe(self.tok)}")
        self.take()
        return tuple(values)

    def comparison_from_value(self, value: Any, first: Token) -> Any:
        tok = self.tok
        if tok.kind == "op":
            self.take()
            if self.tok.kind != "field":
                raise self.fail(f"expected a field after {tok.text!r}, found {_describe(self.tok)}")
            field = self.field()
            return Compare(field, _FLIP[_OPS[tok.text]], value, first.col)
        negate = False
        if self.is_kw("not"):
            self.take()
            negate = True
        if self.is_kw("in"):
            self.take()
            if self.tok.kind != "field" or self.tok.text.lower() not in ("tags", "tag"):
                raise self.fail(f"'VALUE in ...' works with tags, e.g. \"baseline\" in tags; found "
                                f"{_describe(self.tok)}")
            field = self.field()
            return In(field, (value,), negate, first.col)
        raise self.fail(f"expected a comparison after the value {first.text}, found {_describe(tok)}")


def parse(text: str) -> Any:
    """The syntax tree of a query; raises QueryError with the column of the mistake."""
    return _Parser(text).parse()


@dataclass(frozen=True)
class SortKey:
    field: Field
    descending: bool


def parse_sort(text: str) -> list[SortKey]:
    """``-metrics.acc,created`` -> sort keys; raises QueryError with the column of the mistake."""
    keys: list[SortKey] = []
    pos = 0
    if text.count(",") >= 20:
        raise QueryError("sort by at most 20 keys, e.g. --sort -metrics.acc,created")
    for part in text.split(","):
        stripped = part.strip()
        col = pos + len(part) - len(part.lstrip()) + 1
        pos += len(part) + 1
        if not stripped:
            raise QueryError("empty sort key; give fields separated by commas, e.g. -metrics.acc,created",
                             text, col)
        desc = stripped.startswith("-")
        name = stripped.lstrip("+-").strip()
        sub = _Parser(name)
        if sub.tok.kind != "field" or sub.tokens[1].kind != "end":
            raise QueryError(f"a sort key is a field, e.g. -metrics.acc; found {stripped!r}", text, col)
        try:
            field = sub.field()
        except QueryError as exc:
            raise QueryError(str(exc).split("\n")[0].split(": ", 1)[1], text, col) from None
        if field.kind == "tags":
            raise QueryError("runs cannot be sorted by tags; sort by params.NAME, metrics.NAME, created, "
                             "duration, status, user or id", text, col)
        keys.append(SortKey(Field(field.kind, field.name, col), desc))
    return keys


def fields_of(node: Any) -> list[Field]:
    """The fields a query mentions, in order (to show them as columns)."""
    if isinstance(node, (Compare, In)):
        return [node.field]
    if isinstance(node, BoolOp):
        return [f for item in node.items for f in fields_of(item)]
    if isinstance(node, Not):
        return fields_of(node.item)
    return []


# -- compilation to SQL -------------------------------------------------------------------------
class Query:
    """A parsed ``--where`` and ``--sort``, ready to run against a ``MetadataStore``."""

    def __init__(self, where: str | None = None, sort: str | None = None):
        self.where_text, self.sort_text = where, sort
        self.where = parse(where) if where and where.strip() else None
        self.sort = parse_sort(sort) if sort and sort.strip() else []
        # Type errors (a string compared with a metric, ...) are found before any SQL runs.
        if self.where is not None:
            _Compiler(self.where_text or "", time.time()).compile(self.where)

    def columns(self) -> list[str]:
        """The params/metrics fields the query and the sort mention, for display."""
        found = fields_of(self.where) + [k.field for k in self.sort]
        return list(dict.fromkeys(str(f) for f in found if f.kind in ("params", "metrics")))

    def select(self, flow: str | None = None, limit: int | None = None, offset: int = 0,
               crashed: Iterable[tuple[str, int]] = (), ordered: bool = True, counted: bool = False) -> Any:
        """A SELECT of the matching runs' rows, sorted, limited. ``crashed`` are the (flow, run_id)
        of runs kept as running whose scheduler is gone (``SqlRunQuery`` decides them with
        ``keel.store.liveness.effective_status``, the one place that does). ``ordered=False``
        leaves out the ORDER BY (a count), ``counted=True`` adds the ``keel_total`` column."""
        import sqlalchemy as sa

        from keel.store.schema import runs

        compiler = _Compiler(self.where_text or "", time.time(), set(crashed))
        query = sa.select(runs)
        if counted:   # every row also carries how many rows match (keel_total), counted in the same pass
            query = sa.select(runs, sa.func.count().over().label("keel_total"))
        if flow is not None:
            query = query.where(runs.c.flow == flow)
        if self.where is not None:
            query = query.where(compiler.compile(self.where))
        if ordered:
            order = [term for k in self.sort for term in compiler.sort_exprs(k)]
            order += [runs.c.created_at.desc(), runs.c.run_id.desc()]
            query = query.order_by(*order)
        if limit:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return query


class _Compiler:
    def __init__(self, text: str, now: float, crashed: set[tuple[str, int]] | None = None):
        self.text, self.now, self.crashed = text, now, crashed or set()

    def fail(self, message: str, col: int) -> QueryError:
        return QueryError(message, self.text, col)

    def compile(self, node: Any) -> Any:
        import sqlalchemy as sa

        if isinstance(node, BoolOp):
            parts = [self.compile(i) for i in node.items]
            return sa.and_(*parts) if node.op == "and" else sa.or_(*parts)
        if isinstance(node, Not):
            return sa.not_(self.compile(node.item))
        if isinstance(node, In):
            return self.membership(node)
        return self.compare(node)

    # fields as SQL -----------------------------------------------------------------------------
    def metric_last(self, name: str) -> Any:
        import sqlalchemy as sa

        from keel.store.schema import metric_last, runs

        m = metric_last.alias("m")   # one key lookup per run (the last value is kept there on write)
        return (sa.select(m.c.value).where(m.c.flow == runs.c.flow, m.c.run_id == runs.c.run_id, m.c.name == name)
                .scalar_subquery())

    def param_exists(self, name: str, condition: Any) -> Any:
        import sqlalchemy as sa

        from keel.store.schema import params, runs

        p = params.alias("p")
        return sa.exists().where(p.c.flow == runs.c.flow, p.c.run_id == runs.c.run_id, p.c.name == name,
                                 condition(p))

    def tag_exists(self, values: Iterable[str]) -> Any:
        import sqlalchemy as sa

        from keel.store.schema import runs, tags

        t = tags.alias("t")
        return sa.exists().where(t.c.flow == runs.c.flow, t.c.run_id == runs.c.run_id, t.c.tag.in_(list(values)))

    def simple(self, field: Field) -> Any:
        from keel.store.schema import runs

        return {"duration": runs.c.finished_at - runs.c.created_at, "created": runs.c.created_at,
                "finished": runs.c.finished_at, "user": runs.c.user, "id": runs.c.run_id,
                "status": runs.c.status}[field.kind]

    # comparisons -------------------------------------------------------------------------------
    def compare(self, node: Compare) -> Any:
        import sqlalchemy as sa

        f, op, value = node.field, node.op, node.value
        if f.kind == "params":
            if isinstance(value, bool) or value is None or isinstance(value, str):
                if op not in ("=", "!="):
                    raise self.fail(f"{f} {op} {json.dumps(value)}: only = and != compare text, true, false "
                                    f"or null; compare numbers with < and >", node.col)
                raw = json.dumps(value)
                return self.param_exists(f.name, lambda p: _op(p.c.value, op, raw))
            return self.param_exists(f.name, lambda p: _op(p.c.num, op, value))
        if f.kind == "metrics":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise self.fail(f"{f} is a number; compare it with a number, not {json.dumps(value)}", node.col)
            return _op(self.metric_last(f.name), op, value)
        if f.kind == "tags":
            if not isinstance(value, str) or op not in ("=", "!="):
                raise self.fail('tags are matched by name: "NAME" in tags, "NAME" not in tags, '
                                'tags = "NAME" or tags != "NAME"', node.col)
            has = self.tag_exists([value])
            return has if op == "=" else sa.not_(has)
        if f.kind == "status":
            if not isinstance(value, str) or op not in ("=", "!="):
                raise self.fail('status is compared with = or != and a quoted word, e.g. status = "succeeded"',
                                node.col)
            cond = self.status_is(value, node.col)
            return cond if op == "=" else sa.not_(cond)
        if f.kind == "user":
            if not isinstance(value, str) or op not in ("=", "!="):
                raise self.fail('user is compared with = or != and a quoted name, e.g. user = "ana"', node.col)
            return _op(self.simple(f), op, value)
        if f.kind in ("created", "finished"):
            return _op(self.simple(f), op, self.timestamp(value, node.col, f))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            unit = " (seconds; 90s, 2m, 1.5h and 1d also work)" if f.kind == "duration" else ""
            raise self.fail(f"{f} is a number{unit}; compare it with a number, not {json.dumps(value)}", node.col)
        return _op(self.simple(f), op, value)

    def membership(self, node: In) -> Any:
        import sqlalchemy as sa

        f, values = node.field, node.values
        if f.kind == "tags":
            if not all(isinstance(v, str) for v in values):
                raise self.fail("tags are names: quote them, e.g. \"baseline\" in tags", node.col)
            cond = self.tag_exists(values)
        elif f.kind == "params":
            nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            raws = [json.dumps(v) for v in values if not (isinstance(v, (int, float)) and not isinstance(v, bool))]
            cond = self.param_exists(f.name, lambda p: sa.or_(p.c.num.in_(nums), p.c.value.in_(raws)))
        elif f.kind == "metrics":
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise self.fail(f"{f} is a number; list numbers after 'in'", node.col)
            cond = self.metric_last(f.name).in_(list(values))
        elif f.kind == "status":
            cond = sa.or_(*[self.status_is(str(v), node.col) for v in values])
        elif f.kind in ("created", "finished"):
            cond = self.simple(f).in_([self.timestamp(v, node.col, f) for v in values])
        else:
            cond = self.simple(f).in_(list(values))
        return sa.not_(cond) if node.negate else cond

    def status_is(self, value: str, col: int) -> Any:
        import sqlalchemy as sa

        from keel.store.schema import runs

        known = ("running", "succeeded", "failed", "interrupted", "crashed")
        if value not in known:
            raise self.fail(f"unknown status {value!r}; statuses are: {', '.join(known)}", col)
        gone = (sa.tuple_(runs.c.flow, runs.c.run_id).in_(sorted(self.crashed)) if self.crashed
                else sa.false())
        if value == "crashed":
            return sa.and_(runs.c.status == "running", gone)
        if value == "running":
            return sa.and_(runs.c.status == "running", sa.not_(gone))
        return runs.c.status == value

    def timestamp(self, value: Any, col: int, f: Field) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            import datetime as dt

            try:
                return dt.datetime.fromisoformat(value.strip()).timestamp()
            except ValueError:
                pass
        raise self.fail(f"{f} takes a date such as \"2024-05-01\" or \"2024-05-01 13:30\", or UNIX seconds; "
                        f"got {json.dumps(value)}", col)

    def sort_exprs(self, key: SortKey) -> list[Any]:
        """ORDER BY terms for one key; a parameter sorts by its number, then by its text."""
        import sqlalchemy as sa

        from keel.store.schema import params, runs

        f = key.field
        if f.kind == "params":
            p = params.alias("ps")
            where = (p.c.flow == runs.c.flow, p.c.run_id == runs.c.run_id, p.c.name == f.name)
            exprs = [sa.select(p.c.num).where(*where).scalar_subquery(),
                     sa.select(p.c.value).where(*where).scalar_subquery()]
        elif f.kind == "metrics":
            exprs = [self.metric_last(f.name)]
        else:
            exprs = [self.simple(f)]
        return [(e.desc() if key.descending else e.asc()).nulls_last() for e in exprs]


def _op(column: Any, op: str, value: Any) -> Any:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    return column >= value
