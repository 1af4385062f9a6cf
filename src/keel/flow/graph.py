"""The graph of a flow: its steps, how they link, and every problem with the links.

:class:`FlowGraph` reads a flow class the way Metaflow's ``graph.py`` does: the steps are
the class's functions marked by ``@step`` (inherited ones included), and each step's
transition is the ``self.next(...)`` call that ends its body, found by walking the
function's syntax tree. Nothing here runs user code or touches the store::

    graph = FlowGraph(BigSum)
    graph.check()                 # GraphError listing every problem, each with file:line
    graph["start"].out_funcs      # ['part']
    print(graph.to_text())        # what `python bigsum.py show` prints

Building a graph never raises for a badly shaped flow; :meth:`FlowGraph.issues` lists
what is wrong and :meth:`FlowGraph.check` raises :class:`~keel.errors.GraphError`.
"""

from __future__ import annotations

import ast
import difflib
import heapq
import inspect
import os
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, TypeGuard

from keel.errors import GraphError, Issue
from keel.flow.decorators import step_decorators

__all__ = ["RESERVED_NAMES", "FlowGraph", "Node"]

#: Names a flow may not use for a step, a class attribute or an artifact, and why.
RESERVED_NAMES: dict[str, str] = {
    "next": "self.next moves the run to the next step",
    "input": "self.input is the element a foreach task works on",
    "index": "self.index is the position of a foreach task",
    "foreach_stack": "self.foreach_stack holds the foreach positions of a task",
    "merge_artifacts": "self.merge_artifacts copies the artifacts of a join's inputs",
    "name": "self.name is the flow's name",
    "script_name": "self.script_name is the file the flow runs from",
}


#: The longest flow, step, project or job name, in bytes: each names a folder of the store
#: (``logs/FLOW/RUN/STEP/``), and file systems take 255 bytes a name.
MAX_NAME_BYTES = 200


@dataclass
class Node:
    """One step of a flow and its place in the graph.

    ``kind`` is the step's transition: ``"linear"`` (one next step), ``"split"`` (several,
    run side by side), ``"foreach"`` (one, run once per element of ``foreach_param``),
    ``"switch"`` (one of several, chosen by the value of ``condition``:
    ``self.next({"a": self.a, "b": self.b}, condition="mode")``) or ``"end"`` (no
    ``self.next``). ``is_join`` is separate: a join takes ``inputs``.
    """

    name: str
    file: str
    lineno: int
    next_lineno: int
    kind: str
    is_join: bool
    out_funcs: list[str]
    in_funcs: list[str] = field(default_factory=list)
    foreach_param: str | None = None
    split_parents: list[str] = field(default_factory=list)
    matching_join: str | None = None
    decorators: list[Any] = field(default_factory=list)
    doc: str = ""
    condition: str | None = None                                  # a switch: the attribute that chooses
    switch_cases: dict[str, str] = field(default_factory=dict)   # a switch: value -> step


class FlowGraph:
    """The steps of ``flow_cls`` linked by their ``self.next(...)`` calls.

    Works on any class whose step functions carry ``_keel_step`` (what ``@step`` sets), so
    it needs neither :class:`~keel.FlowSpec` nor a run. ``nodes`` keeps source order.
    """

    def __init__(self, flow_cls: type):
        self.name: str = flow_cls.__name__
        self.doc: str = inspect.cleandoc(flow_cls.__dict__.get("__doc__") or "")
        self.file, self.lineno = _class_location(flow_cls)
        self.nodes: dict[str, Node] = {}
        self._issues: list[Issue] = []
        self._calls: dict[str, str] = {}  # step -> its self.next(...) call, as written
        # file -> (function name, first line with decorators) -> its syntax tree
        self._functions: dict[str, dict[tuple[str, int], ast.FunctionDef | ast.AsyncFunctionDef]] = {}
        self._guesses: dict[tuple[str, str], str] = {}  # (step, unknown target) -> likely step
        self._parse(flow_cls)
        for node in self.nodes.values():
            for target in dict.fromkeys(node.out_funcs):
                if target in self.nodes:
                    self.nodes[target].in_funcs.append(node.name)
        self._check_start_end()
        self._check_name_lengths()
        self._check_targets()
        self._reachable = self._walk_reachable()
        self._back_edges = self._find_cycles()
        self._traverse()

    @classmethod
    def of(cls, flow_cls: type) -> FlowGraph:
        """``FlowGraph(flow_cls)``, built once per class in a process: parsing every step's
        source is most of a cached run's time. Rebuilt when the class's attributes change
        (a step replaced or added). Treat the result as read-only."""
        signature = _class_signature(flow_cls)
        hit = _GRAPHS.get(flow_cls)
        if hit is not None and hit[0] == signature:
            return hit[1]
        graph = cls(flow_cls)
        _GRAPHS[flow_cls] = (signature, graph)
        return graph

    # -- the mapping ---------------------------------------------------------------------

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"FlowGraph({self.name!r}, steps={list(self.nodes)})"

    # -- public API ----------------------------------------------------------------------

    def sorted_nodes(self) -> list[str]:
        """Every step name in topological order, ``start`` first, ties in source order."""
        order = {name: i for i, name in enumerate(self.nodes)}
        indegree = dict.fromkeys(self.nodes, 0)
        for u, v in self._edges():
            indegree[v] += 1
        heap = [(name != "start", order[name], name) for name, d in indegree.items() if d == 0]
        heapq.heapify(heap)
        result: list[str] = []
        while heap:
            _, _, name = heapq.heappop(heap)
            result.append(name)
            for u, v in self._edges(name):
                indegree[v] -= 1
                if indegree[v] == 0:
                    heapq.heappush(heap, (v != "start", order[v], v))
        return result

    def issues(self) -> list[Issue]:
        """Every problem of the graph, in file and line order; empty when the flow is valid."""
        return sorted(self._issues, key=lambda i: (i.file, i.line))

    def check(self) -> None:
        """Raise :class:`~keel.errors.GraphError` with every problem, if there is any."""
        issues = self.issues()
        if issues:
            raise GraphError(issues)

    def bind_configs(self, configs: dict[str, Any]) -> None:
        """Read every ``config_expr`` in the steps' decorator arguments from the run's configs
        (``keel.flow.parameters.run_configs``), when the run starts; every problem at once
        (ParameterError: the configuration does not fit the decorators)."""
        from keel.errors import ParameterError
        from keel.flow.decorators import bind_decorator

        problems = []
        for node in self.nodes.values():
            bound = []
            for deco in node.decorators:
                try:
                    bound.append(bind_decorator(deco, configs))
                except ParameterError as exc:
                    problems.append(str(exc))
                    bound.append(deco)
            node.decorators = bound
        if problems:
            raise ParameterError("\n".join(problems))

    def to_text(self) -> str:
        """The graph as ``python flow.py show`` prints it, one block per step."""
        lines = [self.name]
        if self.doc:
            lines.append("    " + self.doc.splitlines()[0])
        for name in self.sorted_nodes():
            node = self.nodes[name]
            lines.append("")
            lines.append(f"Step {name}" + (" (join)" if node.is_join else ""))
            lines.append("    " + (node.doc.splitlines()[0] if node.doc else "?"))
            for deco in node.decorators:
                lines.append("    " + _format_decorator(deco))
            if node.kind == "foreach":
                lines.append(f"    foreach over {node.foreach_param} => " + ", ".join(node.out_funcs))
            elif node.kind == "switch":
                cases = ", ".join(f"{k!r}: {v}" for k, v in node.switch_cases.items())
                lines.append(f"    by {node.condition} => {{{cases}}}")
            elif node.out_funcs:
                lines.append("    => " + ", ".join(node.out_funcs))
        return "\n".join(lines) + "\n"

    # -- parsing -------------------------------------------------------------------------

    def _parse(self, flow_cls: type) -> None:
        order: dict[str, None] = {}
        for klass in reversed(flow_cls.__mro__):
            order.update(dict.fromkeys(klass.__dict__))
        for name in order:
            value = _lookup(flow_cls, name)
            if inspect.isfunction(value) and getattr(value, "_keel_step", False):
                self.nodes[name] = self._parse_step(name, value)
            elif name in RESERVED_NAMES:
                self._check_reserved_attribute(flow_cls, name)

    def _parse_step(self, name: str, func: Any) -> Node:
        code = getattr(inspect.unwrap(func), "__code__", None)
        file = _display_path(code.co_filename if code else self.file)
        nargs = code.co_argcount if code else 1
        node = Node(name=name, file=file, lineno=code.co_firstlineno if code else self.lineno,
                    next_lineno=0, kind="end", is_join=nargs > 1, out_funcs=[],
                    decorators=step_decorators(func), doc=inspect.cleandoc(func.__doc__ or ""))
        tree = self._function_ast(func)
        if tree is not None:
            node.lineno = node.next_lineno = tree.lineno
        if name in RESERVED_NAMES:
            self._issue(node, node.lineno, f"step {name!r} uses the reserved name {name!r} "
                        f"({RESERVED_NAMES[name]}). Rename the step.")
        if nargs > 2:
            self._issue(node, node.lineno, f"step {name!r} takes {nargs - 1} arguments after self: a step "
                        "takes only self, and a join self and inputs. Remove the others.")
        if tree is None:
            self._issue(node, node.lineno, f"cannot read the source of step {name!r}, so its self.next(...) "
                        "is unknown. Define the flow in a .py file.")
            node.next_lineno = node.lineno
            return node
        self._check_reserved_assignments(node, tree)

        calls = [c for c in ast.walk(tree) if _is_next_call(c)]
        calls.sort(key=lambda c: (c.lineno, c.col_offset))
        tail = _tail_next(tree.body)
        tails = [c for c in calls if any(c is t for t in tail)]
        for call in calls:
            if not any(call is t for t in tails):
                self._issue(node, call.lineno, f"step {name!r} calls {ast.unparse(call)}, but self.next(...) "
                            "must be the step's last statement, outside any if, loop or try. "
                            "Move it to the end of the step.")
        # Without a proper tail, the last call still says where the author meant to go;
        # following it keeps one misplaced call from making later steps look unreachable.
        chosen = tails[0] if tails else (calls[-1] if calls else None)
        if chosen is None:
            if name != "end":
                self._issue(node, node.lineno, f"step {name!r} does not call self.next(...). End every step "
                            "except 'end' with self.next(self.<next step>).")
            return node
        node.next_lineno = chosen.lineno
        self._calls[name] = ast.unparse(chosen)
        self._parse_next_call(node, chosen)
        if name == "end":
            self._issue(node, chosen.lineno, "step 'end' must not call self.next: the run finishes at end.")
        return node

    def _parse_switch(self, node: Node, call: ast.Call, text: str) -> None:
        """``self.next({"a": self.a, "b": self.b}, condition="attr")``: one branch, chosen at run time."""
        node.kind = "switch"
        cases = call.args[0]
        assert isinstance(cases, ast.Dict)
        catch = next((d for d in node.decorators if d.name == "catch"), None)
        if catch is not None:  # Metaflow refuses it as well
            self._issue(node, catch.line or node.lineno, f"step {node.name!r} has @catch, but it chooses a branch: if it "
                        "fails, no branch is chosen and the run cannot go on. Remove @catch, or catch the "
                        "error inside the step and set the condition yourself.")
        if len(call.args) > 1:
            self._issue(node, call.lineno, f"step {node.name!r} calls {text}: a conditional transition takes "
                        "one dict of value -> step and condition=\"attr\", nothing else.")
        for key, value in zip(cases.keys, cases.values):
            target = _self_attribute(value)
            if not (isinstance(key, ast.Constant) and isinstance(key.value, (str, int, bool))) or target is None:
                shown = ast.unparse(key) if key is not None else "**..."
                self._issue(node, call.lineno, f"step {node.name!r} calls {text}: each case must be a constant "
                            f"and a step, e.g. {{\"a\": self.a}}; found {shown}: {ast.unparse(value)}.")
                continue
            node.switch_cases[str(key.value)] = target
            if target not in node.out_funcs:
                node.out_funcs.append(target)
        if not node.switch_cases:
            self._issue(node, call.lineno, f"step {node.name!r} calls {text} with no case. Give at least one: "
                        f"self.next({{\"a\": self.a}}, condition=\"attr\").")
        condition = [kw for kw in call.keywords if kw.arg == "condition"]
        others = [kw for kw in call.keywords if kw.arg != "condition"]
        for kw in others:
            self._issue(node, call.lineno, f"step {node.name!r} calls {text}: a conditional transition takes no "
                        f"argument {kw.arg or '**...'}=...; use condition=\"attr\" only.")
        if not condition:
            self._issue(node, call.lineno, f"step {node.name!r} calls {text} without condition=\"attr\": name "
                        "the attribute whose value chooses the branch.")
        elif not (isinstance(condition[0].value, ast.Constant) and isinstance(condition[0].value.value, str)):
            self._issue(node, call.lineno, f"step {node.name!r} calls {text}: condition must be the name of an "
                        f"attribute as a string, e.g. condition=\"mode\", not {ast.unparse(condition[0].value)}.")
        else:
            node.condition = condition[0].value.value

    def _parse_next_call(self, node: Node, call: ast.Call) -> None:
        text = ast.unparse(call)
        if call.args and isinstance(call.args[0], ast.Dict):
            self._parse_switch(node, call, text)
            return
        for arg in call.args:
            if _self_attribute(arg) is None:
                self._issue(node, call.lineno, f"step {node.name!r} calls {text}: {ast.unparse(arg)} is not a "
                            "step. Name each next step as self.<step>, e.g. self.next(self.train).")
            else:
                node.out_funcs.append(str(_self_attribute(arg)))
        for dup in sorted({t for t in node.out_funcs if node.out_funcs.count(t) > 1}):
            self._issue(node, call.lineno, f"step {node.name!r} calls {text}: step {dup!r} is named more "
                        "than once. Name each branch once.")
        foreach = None
        for kw in call.keywords:
            if kw.arg == "condition":
                self._issue(node, call.lineno, f"step {node.name!r} calls {text}: condition= needs a dict of "
                            f"value -> step, e.g. self.next({{\"a\": self.a, \"b\": self.b}}, condition=\"mode\").")
            elif kw.arg != "foreach":
                shown = f"{kw.arg}=..." if kw.arg else "**..."
                self._issue(node, call.lineno, f"step {node.name!r} calls {text}: self.next takes no argument "
                            f"{shown}. Its arguments are the next steps and, for a foreach, foreach=\"attr\".")
            elif isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                foreach = kw
                node.foreach_param = kw.value.value
            else:
                foreach = kw
                self._issue(node, call.lineno, f"step {node.name!r} calls {text}: foreach must be the name of "
                            f"a list attribute as a string, e.g. foreach=\"items\", not {ast.unparse(kw.value)}.")
        if not call.args:
            self._issue(node, call.lineno, f"step {node.name!r} calls {text} without a next step. Name it: "
                        "self.next(self.<next step>).")
        if foreach is not None:
            node.kind = "foreach"
            if len(call.args) > 1:
                first = ast.unparse(call.args[0])
                self._issue(node, call.lineno, f"step {node.name!r} calls {text}: a foreach goes to exactly one "
                            f"step. Write self.next({first}, foreach={ast.unparse(foreach.value)}) and split "
                            "inside that step if you need branches.")
        elif len(call.args) > 1:
            node.kind = "split"
        elif call.args:
            node.kind = "linear"

    def _function_ast(self, func: Any) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The syntax tree of ``func``, found in its whole file so that indentation never matters."""
        func = inspect.unwrap(func)
        try:
            lines, _ = inspect.findsource(func)
        except (OSError, TypeError):
            return None
        key = func.__code__.co_filename
        if key not in self._functions:
            index: dict[tuple[str, int], ast.FunctionDef | ast.AsyncFunctionDef] = {}
            try:
                tree = ast.parse("".join(lines))
            except SyntaxError:
                tree = ast.Module(body=[], type_ignores=[])
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    index[node.name, first] = node
            self._functions[key] = index
        return self._functions[key].get((func.__name__, func.__code__.co_firstlineno))

    def _check_reserved_assignments(self, node: Node, tree: ast.AST) -> None:
        for stmt in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(stmt, ast.Assign):
                targets = list(stmt.targets)
            elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
                targets = [stmt.target]
            for target in targets:
                for leaf in ast.walk(target):
                    attr = _self_attribute(leaf)
                    if isinstance(leaf, ast.Attribute) and attr in RESERVED_NAMES and isinstance(leaf.ctx, ast.Store):
                        self._issue(node, leaf.lineno, f"step {node.name!r} sets self.{attr}, but {attr!r} is "
                                    f"reserved ({RESERVED_NAMES[attr]}). Store it under another name.")

    def _check_reserved_attribute(self, flow_cls: type, name: str) -> None:
        owner = next(k for k in flow_cls.__mro__ if name in k.__dict__)
        if owner is object or owner.__module__.split(".")[0] == "keel":
            return  # the base class defines these names on purpose
        file, line = _class_location(owner)
        _, tree = _class_ast(owner)
        for item in tree.body if tree is not None else []:
            names = [t.id for t in getattr(item, "targets", [getattr(item, "target", None)])
                     if isinstance(t, ast.Name)]
            if name in names or getattr(item, "name", None) == name:
                line = item.lineno
        self._issues.append(Issue(file, line, f"attribute {name!r} of {owner.__name__} uses the reserved name "
                                  f"{name!r} ({RESERVED_NAMES[name]}). Rename it."))

    # -- checks --------------------------------------------------------------------------

    def _issue(self, node: Node, line: int, message: str) -> None:
        issue = Issue(node.file, line, message)
        if issue not in self._issues:
            self._issues.append(issue)

    def _check_start_end(self) -> None:
        if "start" not in self.nodes:
            self._issues.append(Issue(self.file, self.lineno, "the flow has no 'start' step. Add a @step "
                                      "method named start: the run begins there."))
        if "end" not in self.nodes:
            self._issues.append(Issue(self.file, self.lineno, "the flow has no 'end' step. Add a @step method "
                                      "named end that does not call self.next: the run finishes there."))

    def _check_name_lengths(self) -> None:
        """The flow's and its steps' names become folder names (logs, cards): a file system takes 255 bytes."""
        if len(self.name.encode()) > MAX_NAME_BYTES:
            self._issues.append(Issue(self.file, self.lineno, f"the flow's name {self.name[:40]}… is "
                                      f"{len(self.name.encode())} bytes long; a flow's name names folders, so "
                                      f"it is at most {MAX_NAME_BYTES} bytes: shorten it"))
        for node in self.nodes.values():
            if len(node.name.encode()) > MAX_NAME_BYTES:
                self._issue(node, node.lineno, f"step {node.name[:40]}… has a name of {len(node.name.encode())} "
                                             f"bytes; a step's name names folders, so it is at most "
                                             f"{MAX_NAME_BYTES} bytes: shorten it")

    def _check_targets(self) -> None:
        steps = list(self.nodes)
        for node in self.nodes.values():
            for target in dict.fromkeys(node.out_funcs):
                if target in self.nodes:
                    continue
                close = difflib.get_close_matches(target, steps, n=1)
                if close:
                    self._guesses[node.name, target] = close[0]
                hint = f" Did you mean {close[0]!r}?" if close else ""
                self._issue(node, node.next_lineno, f"step {node.name!r} calls {self._calls[node.name]}: there "
                            f"is no step {target!r}.{hint} Steps are: {', '.join(steps)}.")

    def _targets(self, name: str) -> list[str]:
        """The steps ``name`` goes to, as the later checks follow them.

        A misspelt target with a close match is read as that match, so that one typo is
        one problem, not also "never reached" for every step after it.
        """
        targets = (self._guesses.get((name, t), t) for t in self.nodes[name].out_funcs)
        return [t for t in dict.fromkeys(targets) if t in self.nodes]

    def _edges(self, source: str | None = None) -> Iterator[tuple[str, str]]:
        """Edges between steps, without the ones that close a cycle."""
        for u in [source] if source else self.nodes:
            for v in self._targets(u):
                if (u, v) not in self._back_edges:
                    yield u, v

    def _walk_reachable(self) -> set[str]:
        if "start" not in self.nodes:
            return set()
        seen, todo = {"start"}, ["start"]
        while todo:
            for v in self._targets(todo.pop()):
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        for node in self.nodes.values():
            if node.name not in seen:
                self._issue(node, node.lineno, f"step {node.name!r} is never reached from start. Call "
                            f"self.next(self.{node.name}) from a step, or remove it.")
        return seen

    def _find_cycles(self) -> set[tuple[str, str]]:
        """Report each cycle once; return the edges that close them (depth first from start)."""
        back: set[tuple[str, str]] = set()
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        reported: set[frozenset[str]] = set()
        roots = (["start"] if "start" in self.nodes else []) + list(self.nodes)
        for root in roots:
            if root in state:
                continue
            path = [root]
            state[root] = 1
            stack = [iter(self._targets(root))]
            while stack:
                v = next(stack[-1], None)
                u = path[-1]
                if v is None:
                    stack.pop()
                    state[path.pop()] = 2
                elif state.get(v) == 1:
                    back.add((u, v))
                    cycle = path[path.index(v):] + [v]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        chain = " -> ".join(repr(s) for s in cycle)
                        self._issue(self.nodes[u], self.nodes[u].next_lineno,
                                    f"steps {chain} form a cycle; a flow must be acyclic.")
                elif v not in state:
                    state[v] = 1
                    path.append(v)
                    stack.append(iter(self._targets(v)))
        return back

    def _traverse(self) -> None:
        """Follow the open splits along every path from start, in topological order.

        A step's stack of open splits comes from its predecessors; a join (a step with
        ``inputs``, or one reached from several steps) closes the innermost. This fills
        ``split_parents`` and ``matching_join`` as Metaflow does, and finds joins without
        inputs, inputs without a join, splits never joined and joins of unrelated splits.
        """
        order = [n for n in self.sorted_nodes() if n in self._reachable]
        preds: dict[str, list[str]] = {n: [] for n in order}
        for u in order:
            for _, v in self._edges(u):
                preds[v].append(u)
        out_stack: dict[str, tuple[str, ...]] = {}
        closed: set[str] = set()
        switched = self._after_switches()
        for name in order:
            node = self.nodes[name]
            incoming = [(out_stack[p], p) for p in preds[name]] or [((), "")]
            stacks = list(dict.fromkeys(s for s, _ in incoming))
            if not node.is_join and (len(incoming) == 1
                                     or (len(stacks) == 1 and all(p in switched for _, p in incoming))):
                stack = own = stacks[0]  # one path, or the branches of a switch meeting again
            elif len(stacks) > 1:
                self._mixed_join(node, incoming)
                own = min(stacks, key=len)
                stack = own[:-1]
                for s in stacks:
                    for split in s[len(stack):]:
                        closed.add(split)
                        self.nodes[split].matching_join = self.nodes[split].matching_join or name
            else:
                own = stacks[0]
                stack = own[:-1]
                self._join(node, incoming, own, closed)
            node.split_parents = list(own)
            if node.kind in ("split", "foreach") and node.out_funcs:
                stack = stack + (name,)
            out_stack[name] = stack
            if name == "end" and not node.out_funcs:
                for split in stack:
                    if split not in closed:
                        closed.add(split)
                        self._never_joined(self.nodes[split])

    def _after_switches(self) -> set[str]:
        """Steps on a branch of a conditional transition (only one of its branches runs, so they
        may meet again in a step that is not a join)."""
        seen: set[str] = set()
        todo = [n.name for n in self.nodes.values() if n.kind == "switch"]
        seen.update(todo)
        while todo:
            for v in self._targets(todo.pop()):
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen

    def _join(self, node: Node, incoming: list[tuple[tuple[str, ...], str]],
              stack: tuple[str, ...], closed: set[str]) -> None:
        sources = [p for _, p in incoming]
        if not stack:
            if len(incoming) == 1:
                self._issue(node, node.lineno, f"step {node.name!r} takes inputs but is not a join: only a "
                            "step that several branches lead to gets inputs. Remove the inputs argument.")
            else:
                self._issue(node, node.lineno, f"step {node.name!r} is reached from {_names(sources)}, which "
                            "are not the branches of one split. Only a join may be reached from several "
                            "steps, and it closes the split its branches start at.")
            return
        top = self.nodes[stack[-1]]
        closed.add(top.name)
        top.matching_join = top.matching_join or node.name
        if not node.is_join:
            self._issue(node, node.lineno, f"step {node.name!r} joins the branches of {top.name!r} but takes "
                        f"no inputs. Write it as def {node.name}(self, inputs):")
        branches = self._targets(top.name)
        if top.kind == "split" and len(sources) != len(branches):
            self._issue(node, node.lineno, f"step {node.name!r} is reached from {len(sources)} step(s) "
                        f"({_names(sources)}), but the split at step {top.name!r} has {len(branches)} branches "
                        f"({_names(branches)}). Make every branch of {top.name!r} end in {node.name!r}.")

    def _mixed_join(self, node: Node, incoming: list[tuple[tuple[str, ...], str]]) -> None:
        groups: dict[str, list[str]] = {}
        for stack, source in incoming:
            groups.setdefault(f"the split at {stack[-1]!r}" if stack else "outside any split", []).append(source)
        parts = [f"{_names(sources)} from {where}" for where, sources in groups.items()]
        deepest = max((s for s, _ in incoming), key=len)
        self._issue(node, node.lineno, f"step {node.name!r} joins branches of different splits: "
                    f"{'; '.join(parts)}. Each split needs its own join: join the branches of "
                    f"{deepest[-1]!r} in their own step first.")

    def _never_joined(self, split: Node) -> None:
        # The same words for a foreach, whose tasks are its branches.
        self._issue(split, split.next_lineno, f"the branches that start at step {split.name!r} are never "
                    "joined. Make them meet in one step that takes inputs.")


# -- helpers ----------------------------------------------------------------------------


_Signature = tuple[tuple[str, int, Any], ...]
_GRAPHS: weakref.WeakKeyDictionary[type, tuple[_Signature, FlowGraph]] = weakref.WeakKeyDictionary()


def _class_signature(flow_cls: type) -> _Signature:
    """What a class's graph is built from: each attribute of its MRO, the identity of its value
    and, for a function, its code (identity, file, line), so a replaced step is never mistaken
    for the old one."""
    out = []
    for klass in flow_cls.__mro__:
        for name, value in klass.__dict__.items():
            code = getattr(value, "__code__", None)
            out.append((name, id(value), (id(code), code.co_filename, code.co_firstlineno) if code else None))
    return tuple(out)


def _lookup(cls: type, name: str) -> Any:
    """``name`` as the class defines it, without running descriptors."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def _display_path(path: str) -> str:
    """``path`` relative to the current directory when it lies under it, else absolute."""
    if not path or path.startswith("<"):
        return path or "?"
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    if absolute.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, cwd)
    return absolute


def _class_location(cls: type) -> tuple[str, int]:
    """The file and ``class`` line of ``cls``, found through its functions when needed.

    ``inspect.getsourcefile(cls)`` needs the class's module in ``sys.modules``, which a
    flow file imported by path may not be; its functions know their file either way.
    """
    file, tree = _class_ast(cls)
    if tree is not None:
        return _display_path(file), tree.lineno
    try:
        return _display_path(inspect.getsourcefile(cls) or inspect.getfile(cls)), inspect.findsource(cls)[1] + 1
    except (OSError, TypeError):
        return _display_path(file), 0


def _class_ast(cls: type) -> tuple[str, ast.ClassDef | None]:
    """The file of ``cls`` and its ``class`` statement, located by a function defined in it."""
    funcs = [inspect.unwrap(v) for v in cls.__dict__.values() if inspect.isfunction(v)]
    for func in funcs:
        code = func.__code__
        try:
            lines, _ = inspect.findsource(func)
            tree = ast.parse("".join(lines))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.ClassDef) and node.name == cls.__name__
                    and node.lineno <= code.co_firstlineno <= (node.end_lineno or 0)
                    and any(isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == func.__name__
                            for f in node.body)):
                return code.co_filename, node
        return code.co_filename, None
    return "?", None


def _self_attribute(expr: ast.AST) -> str | None:
    """``"x"`` for the expression ``self.x``, else None."""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
        return expr.attr
    return None


def _is_next_call(expr: ast.AST) -> TypeGuard[ast.Call]:
    return isinstance(expr, ast.Call) and _self_attribute(expr.func) == "next"


def _tail_next(body: list[ast.stmt]) -> list[ast.Call]:
    """The ``self.next`` call(s) that end ``body``: one, or one per branch of a final
    if/else whose branches all end in the same call; empty otherwise."""
    if not body:
        return []
    last = body[-1]
    if isinstance(last, ast.Expr) and _is_next_call(last.value):
        return [last.value]
    if isinstance(last, ast.If) and last.orelse:
        first, other = _tail_next(last.body), _tail_next(last.orelse)
        if first and other and ast.dump(first[0]) == ast.dump(other[0]):
            return first + other
    return []


def _names(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _format_decorator(deco: Any) -> str:
    attributes = getattr(deco, "attributes", {}) or {}
    args = ", ".join(f"{k}={v!r}" for k, v in attributes.items())
    return f"@{getattr(deco, 'name', type(deco).__name__)}({args})"
