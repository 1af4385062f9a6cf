"""Reading results back: ``Flow``, ``Run``, ``Step``, ``Task`` and their artifacts.

    from keel import Flow, Run
    run = Flow("BigSum").latest_run
    run.data.total                       # artifacts of the end step
    run["start"].task.data.m             # a step's only task
    [t.data.s for t in run["part"]]      # every task of a step
    run.metrics["loss"]                  # [(step, value, timestamp), ...]
    Run("BigSum/3")

Everything is read from the store under KEEL_HOME (or KEEL_METADATA_URL/KEEL_ARTIFACT_URL)
at the moment it is asked for; artifacts are loaded only when touched.
"""

from __future__ import annotations

import datetime as _dt
from functools import cached_property
from typing import Any, Iterator

from keel.errors import NotFoundError, UsageError, clip
from keel.store import Store

_store: Store | None = None
_store_key: tuple[object, ...] | None = None
_namespace: str | None = None  # None: every run (Keel's default); "user:alice", "project:x", ...


def namespace(ns: str | None) -> str | None:
    """Show only runs tagged ``ns`` (``"user:alice"``, ``"project_branch:prod"``...) from now on;
    ``namespace(None)`` shows every run again. Returns ``ns``."""
    global _namespace
    if ns is not None and (not isinstance(ns, str) or not ns):
        raise UsageError(f"a namespace is a tag such as 'user:alice', or None for every run; got {ns!r}")
    _namespace = ns
    return ns


def get_namespace() -> str | None:
    """The namespace the client reads in (None: every run)."""
    return _namespace


def default_namespace() -> str:
    """Go back to Metaflow's default namespace, ``user:<you>``, and return it."""
    from keel.store.runs import user_name

    return namespace(f"user:{user_name()}") or ""


def _default_store() -> Store:
    """The store named by the environment now (re-opened if the environment changed)."""
    import os

    global _store, _store_key
    from keel.settings import Settings

    settings = Settings.from_env()
    key = (settings, os.getcwd())
    if _store is None or key != _store_key:
        _store, _store_key = Store.from_env(settings), key
    return _store


def _time(ts: float | None) -> _dt.datetime | None:
    return _dt.datetime.fromtimestamp(ts) if ts is not None else None


def parse_pathspec(pathspec: str, parts: int) -> list[str]:
    """Split "Flow/run[/step[/task]]" into exactly ``parts`` pieces, with a clear error."""
    pieces = [p for p in str(pathspec).strip("/").split("/")]
    shapes = {2: "Flow/RUN (e.g. BigSum/3)", 3: "Flow/RUN/STEP (e.g. BigSum/3/start)",
              4: "Flow/RUN/STEP/TASK (e.g. BigSum/3/part/7)"}
    if len(pieces) != parts or not all(pieces):
        raise UsageError(f"malformed pathspec {clip(pathspec)}: expected {shapes[parts]}")
    from keel.ids import parse_id

    parse_id(pieces[1], "run id", pathspec)  # digits, and small enough for the database
    if parts == 4:
        parse_id(pieces[3], "task id", pathspec)
    return pieces


class DataArtifact:
    """One artifact's metadata and, on demand, its value."""

    def __init__(self, task: "Task", name: str, info: dict[str, Any]):
        self._task, self.name, self._info = task, name, info

    @property
    def key(self) -> str:
        return self._info["key"]

    @property
    def size(self) -> int:
        return int(self._info["size"])

    @property
    def serializer(self) -> str:
        return self._info["serializer"]

    @property
    def data(self) -> Any:
        from keel.store.artifacts import ArtifactRef

        ref = ArtifactRef(key=self.key, serializer=self.serializer, size=self.size)
        return self._task._store.artifacts.get(ref, what=f"artifact {self.name!r} of {self._task.pathspec}")

    def __repr__(self) -> str:
        return f"DataArtifact({self._task.pathspec}:{self.name}, {self.size} bytes)"


class _Artifacts(dict):
    """``task.artifacts``: name -> DataArtifact, also as attributes (``task.artifacts.model.data``, as
    Metaflow's namedtuple; a name that is a dict method, like ``items``, is read as ``artifacts["items"]``)."""

    def __getattr__(self, name: str) -> DataArtifact:
        try:
            found: DataArtifact = self[name]
        except KeyError:
            raise AttributeError(f"no artifact {name!r} (there are: {', '.join(sorted(self)) or 'none'})") from None
        return found


class _TaskList(list):
    """``step.tasks``: a list of the step's tasks that may also be called, as Metaflow's ``step.tasks()``."""

    def __call__(self, *tags: str) -> _TaskList:
        return self


class TaskData:
    """``task.data.x``: the value of artifact x, loaded when read and cached."""

    def __init__(self, task: "Task"):
        self._task = task
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._cache:
            artifacts = self._task.artifacts
            if name not in artifacts:
                have = ", ".join(sorted(artifacts)) or "none"
                raise AttributeError(f"{self._task.pathspec} has no artifact {name!r} (it has: {have})")
            self._cache[name] = artifacts[name].data
        return self._cache[name]

    def __contains__(self, name: str) -> bool:
        return name in self._task.artifacts

    def __dir__(self) -> list[str]:
        return sorted(self._task.artifacts)

    def __repr__(self) -> str:
        return f"<data of {self._task.pathspec}: {', '.join(sorted(self._task.artifacts))}>"


class Task:
    """One task of a step (one element of a foreach, or the step's only task)."""

    def __init__(self, pathspec: str | None = None, *, _record: Any = None, _store: Store | None = None):
        self._store = _store or _default_store()
        if _record is None:
            flow, run_id, _step, task_id = parse_pathspec(pathspec or "", 4)
            _record = self._store.metadata.runs.get_task(flow, int(run_id), int(task_id))
            if _record is None or _record.step != _step:
                raise NotFoundError(f"no task {pathspec}; see the tasks with: keel show {flow}/{run_id}")
        self._record = _record

    @property
    def id(self) -> int:
        return self._record.task_id

    @property
    def step_name(self) -> str:
        return self._record.step

    @property
    def pathspec(self) -> str:
        r = self._record
        return f"{r.flow}/{r.run_id}/{r.step}/{r.task_id}"

    @property
    def status(self) -> str:
        return self._record.status

    @property
    def successful(self) -> bool:
        return self._record.status in ("succeeded", "caught", "reused", "cached")

    @property
    def finished(self) -> bool:
        return self._record.finished_at is not None

    @property
    def created_at(self) -> _dt.datetime | None:
        return _time(self._record.created_at)

    @property
    def started_at(self) -> _dt.datetime | None:
        return _time(self._record.started_at)

    @property
    def finished_at(self) -> _dt.datetime | None:
        return _time(self._record.finished_at)

    @property
    def attempts(self) -> int:
        return self._record.attempts

    @property
    def retry_count(self) -> int:
        return max(0, self._record.attempts - 1)

    @property
    def node(self) -> str | None:
        return self._record.node

    @property
    def index(self) -> int | None:
        """The position of this task in its innermost foreach, or None."""
        return self._record.foreach[-1][2] if self._record.foreach else None

    @property
    def reused(self) -> bool:
        """True for a task that resume took from an earlier run instead of running it again."""
        return self._record.origin_run_id is not None and self._record.status != "cached"

    @property
    def cached(self) -> bool:
        """True for a task whose outputs came from the step cache (an earlier task with its key)."""
        return self._record.status == "cached"

    @property
    def origin(self) -> str | None:
        """For a reused or cached task: the pathspec of the task its outputs came from."""
        r = self._record
        if r.origin_run_id is None:
            return None
        return f"{r.flow}/{r.origin_run_id}/{r.step}/{r.origin_task_id}"

    @cached_property
    def artifacts(self) -> dict[str, DataArtifact]:
        r = self._record
        rows = self._store.metadata.runs.task_artifacts(r.flow, r.run_id, r.task_id)
        return _Artifacts({name: DataArtifact(self, name, info) for name, info in rows.items()
                           if not name.startswith("_keel")})

    def __getitem__(self, name: str) -> DataArtifact:
        """``task["x"]``: the artifact x (``.data`` is its value), as in Metaflow."""
        artifacts = self.artifacts
        if name not in artifacts:
            raise KeyError(f"{self.pathspec} has no artifact {name!r} (it has: {', '.join(sorted(artifacts)) or 'none'})")
        return artifacts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.artifacts

    def __iter__(self) -> Iterator[DataArtifact]:
        return iter(list(self.artifacts.values()))

    @property
    def cards(self) -> list[Any]:
        """The task's cards (``@card``) as ``keel.cards.Card``; while it runs, as last refreshed."""
        import glob
        import os

        from keel.cards import CARDS_ARTIFACT, Card, live_path

        r = self._record
        info = self._store.metadata.runs.task_artifacts(r.flow, r.run_id, r.task_id).get(CARDS_ARTIFACT)
        if info is not None and (info.get("own") or self.reused):
            entries = DataArtifact(self, CARDS_ARTIFACT, info).data
            return [Card(e["id"], e["type"], self._store.artifacts.get_bytes(e["key"]).decode(), self.pathspec)
                    for e in entries]
        if r.status != "running":
            return []
        folder = os.path.dirname(live_path(str(self._store.settings.home / "cards"), self.pathspec, 0))
        return [Card(None, "live", open(path, encoding="utf-8").read(), self.pathspec)
                for path in sorted(glob.glob(os.path.join(folder, "*.html")))]

    @cached_property
    def data(self) -> TaskData:
        return TaskData(self)

    def _log(self, stream: str) -> str:
        r = self._record
        if r.origin_run_id is not None and r.origin_task_id is not None:  # reused: the output is the origin's
            return self._store.logs.read(r.flow, r.origin_run_id, r.step, r.origin_task_id, stream)
        return self._store.logs.read(r.flow, r.run_id, r.step, r.task_id, stream)

    @property
    def stdout(self) -> str:
        return self._log("stdout")

    @property
    def stderr(self) -> str:
        return self._log("stderr")

    @property
    def exception(self) -> dict[str, Any] | None:
        """The last failed attempt's error (type, message, traceback), if any. None for a task
        that @catch handled: the run went on and the error is in the catch artifact."""
        r = self._record
        if r.status == "caught":
            return None
        failed = [a for a in self._store.metadata.runs.list_attempts(r.flow, r.run_id, r.task_id) if a["error_type"]]
        if not failed:
            return None
        a = failed[-1]
        return {"type": a["error_type"], "message": a["error_message"], "traceback": a["traceback"]}

    @property
    def parent_tasks(self) -> list["Task"]:
        """The tasks this one took its inputs from (several for a join, none for start)."""
        r = self._record
        found = [self._store.metadata.runs.get_task(r.flow, r.run_id, pid) for pid in r.parents]
        return [Task(_record=t, _store=self._store) for t in found if t is not None]

    @property
    def child_tasks(self) -> list["Task"]:
        """The tasks that took their inputs from this one."""
        r = self._record
        return [Task(_record=t, _store=self._store) for t in self._store.metadata.runs.list_tasks(r.flow, r.run_id)
                if r.task_id in (t.parents or [])]

    @property
    def metrics(self) -> dict[str, list[tuple[Any, float, float]]]:
        r = self._record
        return self._store.metadata.metrics.run_metrics(r.flow, r.run_id, task_id=r.task_id)

    def __repr__(self) -> str:
        return f"Task('{self.pathspec}')"


class Step:
    """A step of a run: iterate its tasks, or take ``.task`` when there is one."""

    def __init__(self, pathspec: str | None = None, *, _run: "Run | None" = None, _name: str | None = None):
        if _run is None:
            flow, run_id, name = parse_pathspec(pathspec or "", 3)
            _run, _name = Run(f"{flow}/{run_id}"), name
        assert _name is not None
        self._run, self.id = _run, _name

    @property
    def pathspec(self) -> str:
        return f"{self._run.pathspec}/{self.id}"

    @cached_property
    def _tasks(self) -> list[Task]:
        store = self._run._store
        records = store.metadata.runs.list_tasks(self._run.flow_name, self._run.id, self.id)
        return [Task(_record=r, _store=store) for r in records]

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __getitem__(self, task_id: int | str) -> Task:
        from keel.ids import is_id

        text = str(task_id)
        if is_id(text):
            for task in self._tasks:
                if task.id == int(text):
                    return task
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise KeyError(f"step {self.pathspec} has no task {shown!r}; its tasks are: "
                       f"{', '.join(str(t.id) for t in self._tasks[:20]) or 'none'}"
                       f"{' …' if len(self._tasks) > 20 else ''}")

    @property
    def task(self) -> Task:
        """The step's task; for a foreach step, the first. Raises if the step never ran."""
        done = [t for t in self._tasks if t.successful] or self._tasks
        if not done:
            raise NotFoundError(f"step {self.pathspec} has no task (it did not run)")
        return done[0]

    @property
    def tasks(self) -> list[Task]:
        """The step's tasks: ``step.tasks`` or, as in Metaflow, ``step.tasks()``."""
        return _TaskList(self._tasks)

    @property
    def started_at(self) -> _dt.datetime | None:
        times = [t._record.started_at for t in self._tasks if t._record.started_at]
        return _time(min(times)) if times else None

    @property
    def finished_at(self) -> _dt.datetime | None:
        times = [t._record.finished_at for t in self._tasks if t._record.finished_at]
        return _time(max(times)) if times else None

    @property
    def parent_steps(self) -> list["Step"]:
        """The steps whose tasks fed this step's tasks, in run order."""
        names = {p.step_name for t in self._tasks for p in t.parent_tasks}
        return [self._run[n] for n in self._run._steps if n in names]

    @property
    def child_steps(self) -> list["Step"]:
        """The steps whose tasks took their inputs from this step's tasks, in run order."""
        names = {c.step_name for t in self._tasks for c in t.child_tasks}
        return [self._run[n] for n in self._run._steps if n in names]

    def __repr__(self) -> str:
        return f"Step('{self.pathspec}')"


class Run:
    """One run of a flow, by pathspec: ``Run("BigSum/3")``."""

    def __init__(self, pathspec: str | None = None, *, _record: Any = None, _store: Store | None = None):
        self._store = _store or _default_store()
        if _record is None:
            flow, run_id = parse_pathspec(pathspec or "", 2)
            _record = self._store.metadata.runs.get_run(flow, int(run_id))
            if _record is None:
                raise NotFoundError(f"no run {flow}/{run_id}; list the runs with: keel runs {flow}")
        self._record = _record

    @property
    def id(self) -> int:
        return self._record.run_id

    @property
    def flow_name(self) -> str:
        return self._record.flow

    @property
    def pathspec(self) -> str:
        return f"{self._record.flow}/{self._record.run_id}"

    def _refresh(self) -> None:
        record = self._store.metadata.runs.get_run(self._record.flow, self._record.run_id)
        if record is not None:
            self._record = record
            self.__dict__.pop("_steps", None)

    @property
    def status(self) -> str:
        """running, succeeded, failed, interrupted, or crashed (no heartbeat from its scheduler)."""
        self._refresh()
        return self._record.effective_status

    @property
    def successful(self) -> bool:
        return self.status == "succeeded"

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._record.params)

    @property
    def tags(self) -> list[str]:
        self._refresh()
        return list(self._record.tags)

    @property
    def created_at(self) -> _dt.datetime:
        return _time(self._record.created_at)  # type: ignore[return-value]

    @property
    def finished_at(self) -> _dt.datetime | None:
        return _time(self._record.finished_at)

    @property
    def duration(self) -> float | None:
        r = self._record
        return (r.finished_at - r.created_at) if r.finished_at else None

    @property
    def code_hash(self) -> str | None:
        return self._record.code_hash

    @property
    def environment(self) -> dict[str, Any]:
        return dict(self._record.environment)

    @property
    def origin_run_id(self) -> int | None:
        return self._record.origin_run_id

    @property
    def error(self) -> str | None:
        return self._record.error

    @cached_property
    def _steps(self) -> list[str]:
        rows = self._store.metadata.runs.list_steps(self._record.flow, self._record.run_id)
        return [r["step"] for r in rows]

    def steps(self) -> list[Step]:
        return [Step(_run=self, _name=name) for name in self._steps]

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps())

    def __getitem__(self, step: str) -> Step:
        if step not in self._steps:
            raise KeyError(f"run {self.pathspec} has no step {step!r}; its steps are: {', '.join(self._steps)}")
        return Step(_run=self, _name=step)

    def __contains__(self, step: str) -> bool:
        return step in self._steps

    @property
    def end_task(self) -> Task | None:
        if "end" not in self._steps:
            return None
        tasks = list(self["end"])
        return tasks[0] if tasks else None

    @property
    def data(self) -> TaskData:
        """The artifacts of the end step (the run must have reached it)."""
        task = self.end_task
        if task is None or not task.successful:
            raise NotFoundError(f"run {self.pathspec} did not finish its end step ({self.status}); "
                                f"read a step's artifacts with run['step'].task.data")
        return task.data

    @property
    def metrics(self) -> dict[str, list[tuple[Any, float, float]]]:
        """Every metric of the run: name -> [(step, value, timestamp), ...] in logging order."""
        return self._store.metadata.metrics.run_metrics(self._record.flow, self._record.run_id)

    @property
    def user_tags(self) -> list[str]:
        """The tags people gave the run (``--tag``, ``current.tag``, ``add_tag``)."""
        kinds = self._store.metadata.annotations.tag_kinds(self._record.flow, self._record.run_id)
        return sorted(t for t, system in kinds.items() if not system)

    @property
    def system_tags(self) -> list[str]:
        """The tags Keel gave the run: ``user:NAME``, ``runtime:dev``, ``project:NAME``..."""
        kinds = self._store.metadata.annotations.tag_kinds(self._record.flow, self._record.run_id)
        return sorted(t for t, system in kinds.items() if system)

    def add_tag(self, *tags: str) -> None:
        from keel.flow.tags import check_tags

        tags = tuple(check_tags(tags))
        self._store.metadata.annotations.add_tags(self._record.flow, self._record.run_id, tags)
        self._refresh()

    def add_tags(self, tags: list[str]) -> None:
        self.add_tag(*tags)

    def remove_tag(self, *tags: str) -> None:
        """Remove user tags; a system tag cannot be removed."""
        system = set(self.system_tags) & set(tags)
        if system:
            raise UsageError(f"{sorted(system)[0]!r} is a system tag of {self.pathspec}; only user tags "
                             f"can be removed")
        self._store.metadata.annotations.remove_tags(self._record.flow, self._record.run_id, tags)
        self._refresh()

    def remove_tags(self, tags: list[str]) -> None:
        self.remove_tag(*tags)

    def replace_tag(self, tag_to_remove: str, tag_to_add: str) -> None:
        """Swap one user tag for another."""
        self.replace_tags([tag_to_remove], [tag_to_add])

    def replace_tags(self, tags_to_remove: list[str], tags_to_add: list[str]) -> None:
        self.remove_tag(*tags_to_remove)
        self.add_tag(*tags_to_add)

    def comment(self, text: str, *, author: str | None = None) -> dict[str, Any]:
        """Keep a comment on the run (author: KEEL_USER or the login name; time: now)."""
        if not isinstance(text, str) or not text.strip():
            raise UsageError("a comment needs some text, e.g. run.comment('lr too high: diverged at step 300')")
        return _comment_dict(self._store.metadata.annotations.add_comment(self._record.flow, self._record.run_id,
                                                                          text, author=author))

    @property
    def comments(self) -> list[dict[str, Any]]:
        """The run's comments, oldest first: [{"id", "author", "created_at", "text"}, ...]."""
        return [_comment_dict(c) for c in
                self._store.metadata.annotations.list_comments(self._record.flow, self._record.run_id)]

    def __repr__(self) -> str:
        return f"Run('{self.pathspec}')"


def _comment_dict(c: Any) -> dict[str, Any]:
    return {"id": c.id, "author": c.author, "created_at": c.created_at, "text": c.text}


class Flow:
    """All runs of one flow, by name: ``Flow("BigSum")``."""

    def __init__(self, name: str, *, _store: Store | None = None):
        if not name or "/" in name:
            raise UsageError(f"malformed flow name {clip(name)}: give the flow's class name, e.g. Flow('BigSum')")
        self.name = name
        self._store = _store or _default_store()

    @property
    def pathspec(self) -> str:
        return self.name

    def runs(self, *tags: str, where: str | None = None, sort: str | None = None,
             limit: int | None = None) -> list[Run]:
        """Runs newest first; with tags, only runs that have all of them.

        ``where`` and ``sort`` take the search language of ``keel runs --where/--sort``
        (see ``keel.tracking.query``): ``Flow("Train").runs(where="params.alpha > 0.3 and
        metrics.acc >= 0.9", sort="-metrics.acc", limit=20)``.
        """
        from keel.tracking.search import search_runs  # one query for the runs, bulk reads for the rest

        if _namespace is not None:
            tags = (_namespace, *tags)
        if tags:
            tag_query = " and ".join(f"{_json_str(t)} in tags" for t in tags)
            where = f"({where}) and {tag_query}" if where else tag_query
        records = search_runs(self._store.metadata, self.name, where=where, sort=sort, limit=limit)
        return [Run(_record=r, _store=self._store) for r in records]

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs())

    def __getitem__(self, run_id: int | str) -> Run:
        return Run(f"{self.name}/{run_id}", _store=self._store)

    def _latest(self, status: str | None = None) -> Run | None:
        if _namespace is not None:  # the newest run in the namespace
            where = f"status = {_json_str(status)}" if status else None
            found = self.runs(where=where, limit=1)
            return found[0] if found else None
        run_id = self._store.metadata.runs.latest_run_id(self.name, status)
        return Run(f"{self.name}/{run_id}", _store=self._store) if run_id is not None else None

    @property
    def latest_run(self) -> Run | None:
        return self._latest()

    @property
    def latest_successful_run(self) -> Run | None:
        return self._latest("succeeded")

    def __repr__(self) -> str:
        return f"Flow('{self.name}')"


def _json_str(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)
