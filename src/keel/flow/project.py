"""The project file (``keel.yaml``): its models, and the checks that run before anything does.

    name: weather
    addons:
      spark: {master: "local[2]"}
    jobs:
      - name: ingest
        entrypoint: python ingest.py          # a shell command run in the project folder...
        schedule: "0 * * * *"
      - name: train
        flow: flows/train.py                  # ...or a flow, with parameters
        params: {alpha: 0.5}
        after: [ingest]
        parallelism: 3
        resources: {cpu: 2, memory: 2G}
        retries: 2
        timeout: 30m

:func:`load_project` parses the file with ``yamltree`` (libyaml, keeping line numbers), checks it
with the pydantic models below and the rules pydantic cannot express (unknown jobs in
``after``, cycles, cron expressions, flow files), and raises :class:`~keel.errors.ProjectError`
with **every** problem at once, each with its file and line::

    keel.yaml:7: job 'train': unknown key 'afterr'. Did you mean 'after'?

Loading flow files is I/O outside this package's pure core, so the caller passes a loader
(``keel.flow.loader.load_flow_file``) when flows are to be checked.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from keel.errors import Issue, KeelError, ProjectError
from keel.flow.graph import MAX_NAME_BYTES
from keel.flow.alert_rules import _SKIP_RULE_CHECKS, RULE_KEYS, Action, Rule, When, rule_problems

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[^=\0]+$")
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$",
                       re.IGNORECASE)

#: Add-ons a project may declare and a job may use.
KNOWN_ADDONS = ("queue", "spark")


# -- values written as text -------------------------------------------------------------------
from keel.flow.sizes import parse_size  # noqa: E402,F401 - one parser of sizes for YAML and @resources


def parse_duration(value: Any) -> float:
    """Seconds from ``90s``, ``30m``, ``2h``, ``1h30m`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 90s, 30m or 2h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise ValueError("must be a duration such as 90s, 30m or 2h")
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    if not seconds > 0:  # NaN too
        raise ValueError("must be more than 0 seconds")
    if seconds == float("inf"):
        raise ValueError("must be finite; leave timeout: out for no limit")
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _mapping_or_empty(value: Any) -> Any:
    return {} if value is None else value


def _env_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


Size = Annotated[float, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
EnvValue = Annotated[str, BeforeValidator(_env_value)]


# -- the models ------------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Model):
    """What one instance of a job needs: cores and memory (MB; written ``512M`` or ``2G``)."""

    cpu: float = Field(0.0, ge=0)
    memory: Size = 0.0


class SparkAddon(_Model):
    """A Spark session for the jobs that ask for it (``current.spark``, see keel.addons.spark):
    ``workers`` starts a standalone cluster for the job; ``master`` uses ``local[N]`` or a
    ``spark://`` cluster; neither runs ``local[*]`` in the job."""

    master: str | None = None
    workers: StrictInt | None = Field(None, ge=1)
    worker_cores: StrictInt = Field(1, ge=1)
    worker_memory: str = "1g"
    config: dict[str, EnvValue] = Field(default_factory=dict)


class QueueAddon(_Model):
    """The queue add-on (``current.queue(name)``): where messages live and how they are redelivered.

    ``url`` None keeps them in SQLite in KEEL_HOME; ``redis://host:port/db`` uses Redis Streams.
    """

    url: str | None = None
    visibility_timeout: float = Field(30.0, gt=0)
    max_deliveries: StrictInt = Field(5, ge=1)


class Addons(_Model):
    spark: Annotated[SparkAddon | None, BeforeValidator(_mapping_or_empty)] = None
    queue: Annotated[QueueAddon | None, BeforeValidator(_mapping_or_empty)] = None


class Job(_Model):
    """One job: a shell ``entrypoint`` or a ``flow`` file, and how to run it."""

    name: str
    entrypoint: str | None = None
    flow: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    after: Annotated[list[str], BeforeValidator(_listify)] = Field(default_factory=list)
    schedule: str | None = None
    overlap: StrictBool = False
    parallelism: StrictInt = Field(1, ge=1, le=10_000)   # a task each: more would only exhaust memory
    resources: Resources = Field(default_factory=lambda: Resources.model_validate({}))
    retries: StrictInt = Field(0, ge=0, le=100)
    timeout: Duration | None = None
    env: dict[str, EnvValue] = Field(default_factory=dict)
    addons: Annotated[list[str], BeforeValidator(_listify)] = Field(default_factory=list)
    cache: StrictBool = False                   # reuse an earlier instance's result with the same key


class Endpoint(_Model):
    """A Data Endpoint: ``keel project serve`` serves ``artifact`` of ``flow``'s latest successful run."""

    name: str
    flow: str                                   # the flow's class name, e.g. Train
    artifact: str = "model"
    run: StrictInt | None = Field(None, ge=1)   # pin one run; default: follow the latest successful run
    host: str = "127.0.0.1"
    port: StrictInt | None = Field(None, ge=1, le=65535)   # default: 8000, 8001, ... in file order
    preprocess: str | None = None


class _Head(_Model):
    name: str
    addons: Annotated[Addons, BeforeValidator(_mapping_or_empty)] = Field(default_factory=Addons)
    jobs: list[Any]
    endpoints: list[Any] = Field(default_factory=list)
    alerts: list[Any] = Field(default_factory=list)


_JOB_KEYS = list(Job.model_fields)
_ENDPOINT_KEYS = list(Endpoint.model_fields)
_HEAD_KEYS = list(_Head.model_fields)


@dataclass
class Project:
    """A checked project file. ``jobs`` keeps file order; ``root`` is the project folder."""

    name: str
    path: str                                   # as the user gave it, for messages
    root: str                                   # absolute folder: jobs run here
    jobs: dict[str, Job]
    addons: Addons
    lines: dict[str, int] = field(default_factory=dict)        # job -> line of its "- name:" item
    flow_names: dict[str, str] = field(default_factory=dict)   # flow job -> its FlowSpec class name
    endpoints: dict[str, Endpoint] = field(default_factory=dict)   # file order
    alerts: list[Rule] = field(default_factory=list)               # file order (keel.alerts)

    def endpoint_port(self, name: str) -> int:
        """The endpoint's port: its own, else 8000 + its place in the file."""
        endpoint = self.endpoints[name]
        return endpoint.port if endpoint.port is not None else 8000 + list(self.endpoints).index(name)

    def line(self, job: str, key: str | None = None) -> int:
        return self.lines.get(f"{job}.{key}", self.lines.get(job, 1)) if key else self.lines.get(job, 1)

    def order(self) -> list[str]:
        """Every job in dependency order, ties in file order (the first ready job in the file goes first)."""
        import heapq

        place = {name: i for i, name in enumerate(self.jobs)}
        waiting = {name: len({d for d in job.after if d in place}) for name, job in self.jobs.items()}
        needed_by: dict[str, list[str]] = {}
        for name, job in self.jobs.items():
            for dep in {d for d in job.after if d in place}:
                needed_by.setdefault(dep, []).append(name)
        ready = [place[name] for name, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        names = list(self.jobs)
        done: list[str] = []
        while ready:
            name = names[heapq.heappop(ready)]
            done.append(name)
            for later in needed_by.get(name, ()):
                waiting[later] -= 1
                if waiting[later] == 0:
                    heapq.heappush(ready, place[later])
        if len(done) < len(names):  # unreachable for a checked project (no cycles)
            finished = set(done)
            done.extend(n for n in names if n not in finished)
        return done

    def upstream(self, name: str) -> list[str]:
        """``name`` and every job it needs, transitively, in dependency order."""
        need = {name}
        stack = [name]
        while stack:
            for dep in self.jobs[stack.pop()].after:
                if dep not in need:
                    need.add(dep)
                    stack.append(dep)
        return [j for j in self.order() if j in need]

    def downstream(self, name: str) -> list[str]:
        """``name`` and every job that needs it, transitively, in dependency order."""
        reach = {name}
        order = self.order()
        for job in order:
            if any(dep in reach for dep in self.jobs[job].after):
                reach.add(job)
        return [j for j in order if j in reach]

    def flow_path(self, job: str) -> str:
        flow = self.jobs[job].flow
        assert flow is not None
        return os.path.join(self.root, flow)

    @property
    def scheduled(self) -> list[str]:
        return [name for name, job in self.jobs.items() if job.schedule]


# -- loading and checking ------------------------------------------------------------------------

MAX_YAML_NODES = 200_000  # values in the file once its aliases (*name) are expanded


def _expansion_problem(tree: Any) -> str | None:
    """Why the loaded YAML is unsafe to walk, or None. Aliases share one object, so a few lines of
    nested aliases ("billion laughs") expand to billions of values; this counts the expanded size
    in time proportional to the distinct objects, and finds an alias that contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError("recursive")
        active.add(key)
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                break
        active.discard(key)
        sizes[key] = min(total, MAX_YAML_NODES + 1)
        return sizes[key]

    try:
        total = size(tree)
    except ValueError:
        return "an alias (*name) refers to a value that contains it; a project file cannot be recursive"
    except RecursionError:
        return "the YAML nests too deeply to read; a project file is a few levels of mappings and lists"
    if total > MAX_YAML_NODES:
        return (f"the file expands to more than {MAX_YAML_NODES:,} values once its aliases (*name) are "
                f"expanded; refusing to read it. Write the values out, or use fewer nested aliases")
    return None


def load_project(path: str, *, flow_loader: Callable[[str], type] | None = None) -> Project:
    """Read and check ``path``; raise ProjectError with every problem, or return the Project.

    ``flow_loader(path) -> FlowSpec subclass`` turns on the checks of flow jobs (file exists,
    graph valid, params known); without it flow files are not opened.
    """
    checker = _Checker(path)
    project = checker.check(flow_loader)
    if checker.issues:
        raise ProjectError(sorted(checker.issues, key=lambda i: i.line))
    assert project is not None
    return project


class _Checker:
    def __init__(self, path: str):
        self.path = path
        self.issues: list[Issue] = []

    def add(self, line: int, message: str) -> None:
        self.issues.append(Issue(self.path, line, message))

    # the file -------------------------------------------------------------------------------
    def _read(self) -> Any:
        from keel.flow.yamltree import YamlTreeError, load_tree

        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise ProjectError([Issue(self.path, 0, "the project file does not exist; create it, or pass "
                                                  "its path with -f PATH")],
                               title=f"no project file {self.path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ProjectError([Issue(self.path, 0, f"the project file cannot be read: {exc}")],
                               title=f"cannot read the project file {self.path}") from None
        try:
            tree = load_tree(text)
        except YamlTreeError as exc:
            self.add(exc.line, exc.message)
        except RecursionError:
            self.add(1, "the YAML nests too deeply to read; a project file is a few levels of mappings and lists")
        else:
            problem = _expansion_problem(tree)
            if problem is None:
                return tree
            self.add(1, problem)
        return None

    def check(self, flow_loader: Callable[[str], type] | None) -> Project | None:
        tree = self._read()
        if self.issues:
            return None
        if not isinstance(tree, dict):
            self.add(1, "the project file must be a mapping with name: and jobs:, e.g.\n"
                        "  name: weather\n  jobs:\n    - name: ingest\n      entrypoint: python ingest.py")
            return None
        head = self._head(tree)
        jobs_tree = tree.get("jobs")
        jobs: dict[str, Job] = {}
        lines: dict[str, int] = {}
        names: list[str] = []  # every job name, even of jobs with other mistakes
        seen: set[str] = set()
        if isinstance(jobs_tree, list):
            if not jobs_tree:
                self.add(_key_line(tree, "jobs"), "jobs: is empty; list at least one job")
            for i, item in enumerate(jobs_tree):
                job, name = self._job(jobs_tree, i, item)
                if name is None:
                    continue
                if name in seen:
                    self.add(_item_line(jobs_tree, i), f"job {name!r} is defined twice; job names must be unique")
                    continue
                names.append(name)
                seen.add(name)
                lines[name] = _item_line(jobs_tree, i)
                if isinstance(item, dict):
                    for key in item:
                        lines[f"{name}.{key}"] = _key_line(item, key)
                if job is not None:
                    self._job_rules(item, job, f"job {name!r}")
                    jobs[name] = job
        addons = head.addons if head is not None else Addons()
        self._rules(jobs, names, lines)
        project_name = head.name if head is not None else "?"
        project = Project(name=project_name, path=self.path, root=os.path.dirname(os.path.abspath(self.path)),
                          jobs=jobs, addons=addons, lines=lines, endpoints=self._endpoints(tree))
        project.alerts = self.alerts(tree.get("alerts"), jobs=names)
        if flow_loader is not None:
            self._flows(project, flow_loader)
        return project

    def _head(self, tree: dict[str, Any]) -> _Head | None:
        head = {k: v for k, v in tree.items() if k != "jobs"}
        head["jobs"] = tree["jobs"] if isinstance(tree.get("jobs"), list) else ([] if "jobs" not in tree else tree["jobs"])
        result = None
        try:
            result = _Head.model_validate(_plain(head))
        except ValidationError as exc:
            self._pydantic(exc, tree, None, _HEAD_KEYS)
        if "jobs" not in tree and not tree.get("endpoints"):
            self.add(1, "the project has no jobs: key; add a list of jobs, e.g.\n"
                        "  jobs:\n    - name: ingest\n      entrypoint: python ingest.py")
        name = tree.get("name")
        if isinstance(name, str) and not _PROJECT_NAME.match(name):
            self.add(_key_line(tree, "name"), f"the project's name {_show(name)} may use only letters, digits, "
                                              f"'_', '-' and '.' (it names the project's runs)")
        elif isinstance(name, str) and len(name) > MAX_NAME_BYTES:
            self.add(_key_line(tree, "name"), f"the project's name {name[:40]}… is {len(name)} characters long; "
                                              f"it names folders of the store, so it is at most {MAX_NAME_BYTES}: "
                                              f"shorten it")
        return result

    def _job(self, jobs_tree: list[Any], i: int, item: Any) -> tuple[Job | None, str | None]:
        line = _item_line(jobs_tree, i)
        if not isinstance(item, dict):
            self.add(line, f"job #{i + 1} must be a mapping with name: and entrypoint: or flow:, "
                           f"got {_show(_plain(item))}")
            return None, None
        name = item.get("name")
        label = f"job {name!r}" if isinstance(name, str) else f"job #{i + 1}"
        if isinstance(name, str) and not _NAME.match(name):
            self.add(_key_line(item, "name"), f"{label}: a job's name may use only letters, digits, '_' and "
                                              f"'-', and start with a letter or '_'")
        elif isinstance(name, str) and len(name) > MAX_NAME_BYTES:
            label = f"job {name[:40]}…"
            self.add(_key_line(item, "name"), f"{label}: the name is {len(name)} characters long; a job's name "
                                              f"names folders, so it is at most {MAX_NAME_BYTES}: shorten it")
        plain = _plain(item)
        try:
            return Job.model_validate(plain), name
        except ValidationError as exc:
            self._pydantic(exc, item, label, _JOB_KEYS)
            bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
        # Check what is right in a job with mistakes too, so that every problem shows at once.
        try:
            partial = Job.model_validate({k: v for k, v in plain.items() if k not in bad})
        except ValidationError:
            return None, (name if isinstance(name, str) else None)
        return partial, (name if isinstance(name, str) else None)

    def _job_rules(self, item: dict[str, Any], job: Job, label: str) -> None:
        line = _key_line(item, "name")
        if job.entrypoint is None and job.flow is None:
            self.add(line, f"{label} has neither entrypoint: (a shell command) nor flow: (a flow file); "
                           f"give one of them")
        if job.entrypoint is not None and job.flow is not None:
            self.add(_key_line(item, "flow"), f"{label} has both entrypoint: and flow:; give only one of them")
        if job.entrypoint is not None and not job.entrypoint.strip():
            self.add(_key_line(item, "entrypoint"), f"{label}: entrypoint is empty; give a shell command, "
                                                    f"e.g. python ingest.py")
        if job.params and job.flow is None:
            self.add(_key_line(item, "params"), f"{label}: params: work only with flow:; pass arguments of an "
                                                f"entrypoint on its command line or with env:")
        if job.schedule is not None:
            problem = cron_problem(job.schedule)
            if problem:
                self.add(_key_line(item, "schedule"), f"{label}: {problem}")
        for k, addon in enumerate(job.addons):
            if addon not in KNOWN_ADDONS:
                self.add(_seq_line(item, "addons", k), f"{label}: unknown add-on {addon!r}.{_hint(addon, KNOWN_ADDONS)}"
                                                        f" Add-ons are: {', '.join(KNOWN_ADDONS)}")
        for key, text in (("entrypoint", job.entrypoint), ("flow", job.flow), ("schedule", job.schedule)):
            if text is not None and "\0" in text:
                self.add(_key_line(item, key), f"{label}: {key} contains a NUL character (\\0), which no command, "
                                               f"path or environment can hold; remove it")
        for name, value in job.params.items():
            if "\\u0000" in json.dumps(value, default=str):
                self.add(_key_line(item, "params"), f"{label}: params: {_show(name)} contains a NUL character "
                                                    f"(\\0), which no command line or database text can hold; "
                                                    f"remove it")
        for name, value in job.env.items():
            if not _ENV_NAME.match(name):
                self.add(_key_line(item, "env"), f"{label}: env: {_show(name)} is not a variable name (it is empty "
                                                 f"or holds '=' or NUL); use names such as DATA_DIR")
            elif "\0" in value:
                self.add(_key_line(item, "env"), f"{label}: env: {name} contains a NUL character (\\0), which no "
                                                 f"environment can hold; remove it")
        if job.overlap and job.schedule is None:
            self.add(_key_line(item, "overlap"), f"{label}: overlap: applies to scheduled jobs only; add a "
                                                 f"schedule: or remove overlap:")

    # endpoints ----------------------------------------------------------------------------------
    def _endpoints(self, tree: dict[str, Any]) -> dict[str, Endpoint]:
        seq = tree.get("endpoints")
        out: dict[str, Endpoint] = {}
        if seq is None:
            return out
        if not isinstance(seq, list):
            return out  # reported by _head: endpoints must be a list
        ports: dict[int, str] = {}
        for i, item in enumerate(seq):
            line = _item_line(seq, i)
            if not isinstance(item, dict):
                self.add(line, f"endpoint #{i + 1} must be a mapping like {{name: churn, flow: Train, artifact: model}}")
                continue
            name = item.get("name")
            label = f"endpoint {name!r}" if isinstance(name, str) else f"endpoint #{i + 1}"
            try:
                endpoint = Endpoint.model_validate(_plain(item))
            except ValidationError as exc:
                self._pydantic(exc, item, label, _ENDPOINT_KEYS)
                continue
            if not _NAME.match(endpoint.name):
                self.add(_key_line(item, "name"), f"{label}: an endpoint's name may use only letters, digits, "
                                                  f"'_' and '-', and start with a letter or '_'")
            if endpoint.flow.endswith(".py") or "/" in endpoint.flow:
                self.add(_key_line(item, "flow"), f"{label}: flow: is the flow's class name (e.g. Train), "
                                                  f"not a file; endpoints serve runs already in the store")
            if endpoint.name in out:
                self.add(line, f"endpoint {endpoint.name!r} is defined twice; endpoint names must be unique")
                continue
            out[endpoint.name] = endpoint
            port = endpoint.port if endpoint.port is not None else 8000 + i
            if port in ports:
                self.add(_key_line(item, "port") if "port" in item else line,
                         f"{label}: port {port} is also the port of endpoint {ports[port]!r}; give each its own port:")
            ports[port] = endpoint.name
        return out

    def alerts(self, seq: Any, *, jobs: list[str] | None = None) -> list[Rule]:
        """The ``alerts:`` list, every mistake reported with its line (``keel.alerts`` runs them)."""
        out: list[Rule] = []
        if not isinstance(seq, list):
            return out  # absent, or reported by _head: alerts must be a list
        for i, item in enumerate(seq):
            line = _item_line(seq, i)
            if not isinstance(item, dict):
                self.add(line, f"alert #{i + 1} must be a mapping like "
                               f"{{name: f, when: {{event: failed}}, notify: [{{webhook: URL}}]}}")
                continue
            name = item.get("name")
            label = f"alert {name!r}" if isinstance(name, str) else f"alert #{i + 1}"
            plain = _plain(item)
            if "cooldown" in plain:
                try:
                    plain["cooldown"] = parse_duration(plain["cooldown"])
                except ValueError as exc:
                    self.add(_key_line(item, "cooldown"), f"{label}: cooldown {exc}, got {_show(item['cooldown'])}")
                    continue
            try:
                rule = _unchecked_rule(plain)
            except ValidationError as exc:
                self._pydantic(exc, item, label, RULE_KEYS)
                continue
            for key, message in rule_problems(rule):
                self.add(_loc_line(item, tuple(int(p) if p.isdigit() else p for p in key.split("."))),
                         f"{label}: {message}")
            when = rule.when
            if jobs is not None and when.job is not None and when.job not in jobs:
                self.add(_loc_line(item, ("when", "job")), f"{label}: when: job {when.job!r} is not a job of this "
                                                           f"project.{_hint(when.job, jobs)} Jobs are: {list_names(jobs)}")
            if any(r.name == rule.name for r in out):
                self.add(line, f"alert {rule.name!r} is defined twice; alert names must be unique")
                continue
            out.append(rule)
        return out

    # rules between jobs -----------------------------------------------------------------------
    def _rules(self, jobs: dict[str, Job], names: list[str], lines: dict[str, int]) -> None:
        known = set(names)
        for name, job in jobs.items():
            for dep in job.after:
                if dep == name:
                    self.add(lines.get(f"{name}.after", lines[name]),
                             f"job {name!r} lists itself in after:; a job cannot wait for itself")
                elif dep not in known:
                    self.add(lines.get(f"{name}.after", lines[name]),
                             f"job {name!r}: after: names {dep!r}, but there is no job {dep!r}."
                             f"{_hint(dep, names)} Jobs are: {list_names(names)}")
        for cycle in _cycles({n: [d for d in j.after if d in jobs and d != n] for n, j in jobs.items()}):
            first = cycle[0]
            self.add(lines.get(f"{first}.after", lines[first]),
                     f"the jobs form a dependency cycle: {' -> '.join(cycle + [first])}; "
                     f"remove one of these after: entries")

    # flow jobs ---------------------------------------------------------------------------------
    def _flows(self, project: Project, loader: Callable[[str], type]) -> None:
        from keel.flow.graph import FlowGraph
        from keel.flow.parameters import as_text, flow_parameters

        for name, job in project.jobs.items():
            if job.flow is None:
                continue
            line = project.line(name, "flow")
            path = project.flow_path(name)
            if not os.path.isfile(path):
                self.add(line, f"job {name!r}: flow file {job.flow!r} does not exist (looked for {path}); "
                               f"give its path from the project folder")
                continue
            try:
                flow_cls = loader(path)
            except KeelError as exc:
                self.add(line, f"job {name!r}: cannot load flow {job.flow}: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - the user's module failed to import
                self.add(line, f"job {name!r}: cannot load flow {job.flow}: {type(exc).__name__}: {exc}")
                continue
            graph_issues = FlowGraph(flow_cls).issues()
            for issue in graph_issues:
                self.add(line, f"job {name!r}: flow {job.flow} is invalid: {issue}")
            if graph_issues:
                continue
            project.flow_names[name] = flow_cls.__name__
            known = flow_parameters(flow_cls)
            for key, value in job.params.items():
                if key not in known:
                    self.add(project.line(name, "params"),
                             f"job {name!r}: params: the flow {flow_cls.__name__} has no parameter {key!r}."
                             f"{_hint(key, list(known))} Its parameters are: {', '.join(known) or 'none'}")
                    continue
                try:
                    known[key].parse(as_text(value))
                except KeelError as exc:
                    self.add(project.line(name, "params"), f"job {name!r}: params: {key}: {exc}")

    # pydantic's findings, in our words ----------------------------------------------------------------
    def _pydantic(self, exc: ValidationError, tree: Any, label: str | None, keys: list[str]) -> None:
        for err in exc.errors():
            loc = tuple(err["loc"])
            kind = err["type"]
            line = _loc_line(tree, loc)
            where = _dotted(loc)
            parent = _dotted(loc[:-1])
            head = "".join(f"{p}: " for p in (label, parent) if p)
            if kind == "extra_forbidden":
                valid = _valid_keys(loc, keys)
                key = str(loc[-1])
                self.add(line, f"{head}unknown key {key!r}.{_hint(key, valid)} Valid keys are: {', '.join(valid)}")
            elif kind == "missing":
                self.add(_loc_line(tree, loc[:-1]), f"{head}missing key {str(loc[-1])!r}")
            else:
                self.add(line, f"{label + ': ' if label else ''}{where} {_describe(err)}, got {_show(err.get('input'))}")


_MESSAGES = {
    "int_type": "must be a whole number", "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number", "float_type": "must be a number",
    "float_parsing": "must be a number", "string_type": "must be a string", "bool_type": "must be true or false",
    "bool_parsing": "must be true or false", "dict_type": "must be a mapping (key: value)",
    "list_type": "must be a list", "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)", "finite_number": "must be a finite number",
}


def _unchecked_rule(values: dict[str, Any]) -> Rule:
    """A Rule validated by type only; its cross-field problems are reported one by one, with lines."""
    token = _SKIP_RULE_CHECKS.set(True)
    try:
        return Rule.model_validate(values)
    finally:
        _SKIP_RULE_CHECKS.reset(token)


def load_alert_rules(path: str) -> list[Rule]:
    """The rules of a ``KEEL_ALERTS`` file (``alerts: [...]``, or just the list), checked like keel.yaml's."""
    checker = _Checker(path)
    tree = checker._read()
    rules: list[Rule] = []
    if not checker.issues:
        seq = tree.get("alerts") if isinstance(tree, dict) else tree
        if not isinstance(seq, list):
            checker.add(1, "an alerts file holds a list of rules under alerts:, e.g.\n  alerts:\n    - name: f\n"
                           "      when: {event: failed}\n      notify: [{webhook: https://hooks.example/x}]")
        else:
            rules = checker.alerts(seq)
    if checker.issues:
        raise ProjectError(sorted(checker.issues, key=lambda i: i.line), title=f"{path}: the alert rules have mistakes")
    return rules


def _describe(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le'):,}"
    if kind == "greater_than":
        return f"must be more than {ctx.get('gt')}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    msg = str(err["msg"])
    return msg[:1].lower() + msg[1:]


def _valid_keys(loc: tuple[Any, ...], top: list[str]) -> list[str]:
    inner = [p for p in loc[:-1] if isinstance(p, str)]
    model: type[BaseModel] | None = (_Head if top is _HEAD_KEYS else Endpoint if top is _ENDPOINT_KEYS
                                     else Rule if top is RULE_KEYS else Job)
    for part in inner:
        fld = model.model_fields.get(part) if model else None
        model = None
        if fld is not None:
            for candidate in (Resources, Addons, SparkAddon, QueueAddon, When, Action):
                if candidate in _types(fld.annotation):
                    model = candidate
    return list(model.model_fields) if model else top


def _types(annotation: Any) -> set[Any]:
    from typing import get_args

    out = {annotation}
    for arg in get_args(annotation):
        out |= _types(arg)
    return out


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a usable five-field cron expression, or None."""
    from croniter import croniter

    text = expr.strip()
    if not text.startswith("@") and len(text.split()) != 5:
        return (f"schedule {expr!r} is not a cron expression: it needs five fields (minute hour day-of-month "
                f"month day-of-week), e.g. '0 * * * *' for every hour; it has {len(text.split())}")
    try:
        croniter(text).get_next(float)
    except Exception as exc:  # noqa: BLE001 - croniter's own errors, several classes
        return f"schedule {expr!r} is not a valid cron expression: {exc}. Example: '*/15 * * * *' every 15 minutes"
    return None


# -- helpers over the ruamel tree ------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """ruamel's round-trip types as plain Python values."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _key_line(tree: Any, key: Any) -> int:
    try:
        return int(tree.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return _node_line(tree)


def _item_line(seq: Any, index: int) -> int:
    try:
        return int(seq.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return _node_line(seq)


def _seq_line(tree: Any, key: str, index: int) -> int:
    seq = tree.get(key) if isinstance(tree, dict) else None
    return _item_line(seq, index) if isinstance(seq, list) else _key_line(tree, key)


def _node_line(node: Any) -> int:
    try:
        return int(node.lc.line) + 1
    except (AttributeError, TypeError):
        return 1


def _loc_line(tree: Any, loc: tuple[Any, ...]) -> int:
    """The line of the value that pydantic's ``loc`` points at (or of its closest parent)."""
    line = _node_line(tree)
    node = tree
    for part in loc:
        if isinstance(node, dict) and part in node:
            line = _key_line(node, part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line = _item_line(node, part)
            node = node[part]
        else:
            break
    return line


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "nullable")):  # pydantic's names for validator wrappers
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _hint(word: str, choices: Any) -> str:
    if len(choices) > _MAX_HINT_CHOICES:  # comparing with every one of 20,000 names costs more than it helps
        return ""
    return _close_match(str(word), tuple(choices))


@functools.lru_cache(maxsize=1024)  # 20,000 jobs with the same typo ask the same question
def _close_match(word: str, choices: tuple[str, ...]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


_MAX_HINT_CHOICES = 2_000


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Each elementary cycle found by a depth-first search once, in dependency order, canonical start.
    The search keeps its own stack, so a chain of 20,000 jobs does not reach Python's recursion limit."""
    found: dict[tuple[str, ...], list[str]] = {}
    place = {node: i for i, node in enumerate(edges)}
    state: dict[str, int] = {}
    for root in edges:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        todo = [iter(edges.get(root, []))]
        while todo:
            dep = next(todo[-1], None)
            if dep is None:
                todo.pop()
                state[path.pop()] = 2
            elif state.get(dep) == 1:
                cycle = list(reversed(path[path.index(dep):]))  # dependency order: dep runs before its dependant
                start = min(range(len(cycle)), key=lambda i: place.get(cycle[i], 0))
                cycle = cycle[start:] + cycle[:start]
                found.setdefault(tuple(sorted(cycle)), cycle)
            elif state.get(dep) is None:
                state[dep] = 1
                path.append(dep)
                todo.append(iter(edges.get(dep, [])))
    return list(found.values())


def list_names(names: list[str], most: int = 20) -> str:
    """``a, b, c`` — or the first ``most`` of them and how many more, so a message stays short."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:most])} … and {len(names) - most:,} more"
