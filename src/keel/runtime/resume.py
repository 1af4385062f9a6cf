"""Resume planning: a new run that reuses what an earlier run finished.

Metaflow's meaning: without STEP, every task that finished in the origin run (failed, crashed
or interrupted) is taken as it is, and the run goes on from where it stopped (the first step
that failed); with STEP, that step and every step after it (its descendants in the graph) run
again and every other finished task is reused. Reuse is by reference: no artifact is copied
or computed again. The new run uses the origin's parameters and the flow's current code, so
a fix made after the failure takes effect. Tasks of a resumed run keep pointing at the run
that really computed them, so resuming a resumed run works the same way.

    plan = plan_resume(MyFlow, store, origin_id=12, step=None)
    run(resume_request(MyFlow, "flow.py", plan))          # keel.runtime.entry.run
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keel.errors import NotFoundError, UsageError
from keel.runtime.scheduler import ReusedTask
from keel.store import Store

_DONE = ("succeeded", "reused", "cached", "caught")


@dataclass(frozen=True)
class ResumePlan:
    """Which origin run, from which step (None: where it stopped), with which parameters and reused tasks."""

    origin_id: int
    step: str | None
    params: dict[str, Any]
    reuse: dict[tuple[str, tuple[int, ...]], ReusedTask]


def plan_resume(flow_cls: type, store: Store, origin_id: int | None, step: str | None) -> ResumePlan:
    """Plan a resume of ``origin_id`` (None: the flow's latest run), from ``step`` if given."""
    from keel.flow.graph import FlowGraph
    from keel.flow.parameters import flow_parameters
    from keel.store.artifacts import ArtifactRef

    graph = FlowGraph.of(flow_cls)
    graph.check()
    flow = graph.name
    md = store.metadata
    if origin_id is None:
        origin_id = md.runs.latest_run_id(flow)
        if origin_id is None:
            raise NotFoundError(f"{flow} has no run to resume; start one with: run")
    origin = md.runs.get_run(flow, origin_id)
    if origin is None:
        raise NotFoundError(f"no run {flow}/{origin_id} to resume; list the runs with: keel runs {flow}")
    if origin.effective_status == "running":
        raise UsageError(f"run {flow}/{origin_id} is still running (pid {origin.pid} on {origin.hostname}); "
                         f"wait for it, or stop it, before resuming")
    order = graph.sorted_nodes()
    tasks = md.runs.list_tasks(flow, origin_id)
    if step is not None and step not in graph:
        import difflib

        hint = difflib.get_close_matches(step, order, n=1)
        raise UsageError(f"{flow} has no step {step!r}" + (f"; did you mean {hint[0]!r}?" if hint else ".")
                         + f" Steps are: {', '.join(order)}")
    if origin.status == "running":
        from keel.store.crashes import settle_crashed

        settle_crashed(md, origin)
        tasks = md.runs.list_tasks(flow, origin_id)
    rerun: set[str] = set()
    if step is None:
        failed = sorted({t.step for t in tasks if t.status == "failed" and t.step in graph}, key=order.index)
        step = failed[0] if failed else None
        if step is None and origin.status == "succeeded":
            raise UsageError(f"run {flow}/{origin_id} succeeded: nothing failed to resume from. "
                             f"Name a step to run again from it: resume {origin_id} STEP")
    else:
        rerun = downstream(graph, step)
    reuse: dict[tuple[str, tuple[int, ...]], ReusedTask] = {}
    by_task: dict[int, dict[str, dict[str, Any]]] = {}  # one query for the run, not one per task
    for a in md.runs.run_artifacts(flow, origin_id):
        by_task.setdefault(a["task_id"], {})[a["name"]] = {"key": a["key"], "serializer": a["serializer"],
                                                          "size": a["size"]}
    chose: dict[int, set[str]] = {}  # task -> the steps of its children: the branch a conditional step took
    for t in tasks:
        for parent in t.parents:
            chose.setdefault(parent, set()).add(t.step)
    for t in tasks:
        if t.status not in _DONE or t.step in rerun or t.step not in graph:
            continue
        arts = dict(sorted(by_task.get(t.task_id, {}).items()))
        node = graph[t.step]
        num_splits = None
        if node.kind == "foreach" and node.foreach_param in arts:
            items: Any = store.artifacts.get(ArtifactRef.from_dict(arts[node.foreach_param]),
                                        what=f"foreach list of {flow}/{origin_id}/{t.step}/{t.task_id}")
            num_splits = len(items)
        branch = None
        if node.kind == "switch":  # the branch its child is on (none yet: it runs again and chooses)
            taken = chose.get(t.task_id, set()) & set(node.out_funcs)
            branch = taken.pop() if len(taken) == 1 else None
        reuse[(t.step, tuple(f[2] for f in t.foreach))] = ReusedTask(
            run_id=t.origin_run_id or origin_id, task_id=t.origin_task_id or t.task_id, artifacts=arts,
            num_splits=num_splits, branch=branch)
    params = dict(origin.params)
    start = [t for t in tasks if t.step == "start" and t.status in _DONE]
    if start:
        arts = md.runs.task_artifacts(flow, origin_id, start[0].task_id)
        for p in flow_parameters(flow_cls).values():
            if p.attr in arts:
                a = arts[p.attr]
                params[p.attr] = store.artifacts.get(ArtifactRef(a["key"], a["serializer"], a["size"]),
                                                     what=f"parameter {p.name!r} of {flow}/{origin_id}")
    return ResumePlan(origin_id=origin_id, step=step, params=params, reuse=reuse)


def downstream(graph: Any, step: str) -> set[str]:
    """``step`` and every step reachable from it: what ``resume RUN STEP`` runs again."""
    seen, todo = {step}, [step]
    while todo:
        for nxt in graph[todo.pop()].out_funcs:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def resume_request(flow_cls: type, flow_file: str, plan: ResumePlan, **fields: Any) -> Any:
    """The :class:`~keel.runtime.launch.RunRequest` of a resume (``fields``: tags, quiet, command, executors,
    max_workers, max_num_splits)."""
    from keel.runtime.launch import RunRequest
    from keel.runtime.scheduler import Options

    options = Options(max_workers=fields.pop("max_workers", 16), max_num_splits=fields.pop("max_num_splits", 100),
                      reuse=plan.reuse, cache=fields.pop("cache", None))
    return RunRequest(flow_cls=flow_cls, params=plan.params, flow_file=flow_file, options=options,
                      origin_run_id=plan.origin_id, **fields)
