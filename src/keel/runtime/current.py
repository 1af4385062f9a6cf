"""``current``: what a running task knows about itself, and its tracking calls.

    from keel import current
    current.run_id, current.step_name, current.pathspec
    current.log_metric("loss", 0.3, step=10)
    current.tag("baseline")

Metrics are written into a memory-mapped spool file that the scheduler ingests when the
task ends: a tight loop can log hundreds of thousands of points a second, and every point
logged is kept even when the task crashes, calls ``os._exit`` or is killed by SIGKILL.
While the task runs, a sampler thread adds its CPU use and memory as ``sys.*`` metrics.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import threading
import time
from typing import Any

from keel.errors import DefinitionError
from keel.settings import Settings
from keel.tracking import sysmetrics as _sysmetrics  # imported here so forked tasks find it warm

# One spool record: name id (H), step (q), value (d), timestamp (d), flags (B). The flags byte
# comes last so that a record is complete once it is set: 1 = has a step, 2 = written.
_RECORD = struct.Struct("<HqddB")
_HAS_STEP, _WRITTEN = 1, 2
_FIRST_CHUNK, _MAX_CHUNK = 64 << 10, 8 << 20  # the file grows by doubling, in zero bytes: a
# small first size keeps a task that logs a few points cheap (faulting in a large sparse
# mapping costs ~1 ms), doubling keeps remaps rare for a task that logs millions


class MetricSpool:
    """Metric points of one task, written into a memory-mapped file that the scheduler reads.

    Each point goes straight into the file's pages (an mmap shared with the kernel's page
    cache), so every point logged is kept when the task ends by ``os._exit``, a signal or
    SIGKILL, with no flush and no system call per point.

    Layout: records of ``_RECORD``; a record with name id 0xFFFF introduces a new name whose
    UTF-8 bytes follow (length in the step field; the bytes are written before the record).
    The file grows in zero-filled chunks, so the first record whose flags byte is 0 ends it.
    A process forked from the task (a ``parallel_map`` worker) writes its own file,
    ``PATH.PID``; ``read_all`` reads the task's file and every ``PATH.*`` beside it.
    """

    NEW_NAME = 0xFFFF

    def __init__(self, path: str):
        self.path = path
        self._base = path
        self._names: dict[str, int] = {}
        self._lock = threading.Lock()
        self._mm: Any = None
        self._fd = -1
        self._pos = 0
        self._cap = 0

    def _grow(self, need: int) -> None:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._pos = self._cap = _used_length(self._fd)
        if self._mm is not None:
            self._mm.close()
        self._cap = self._cap + max(min(max(self._cap, _FIRST_CHUNK), _MAX_CHUNK), need)
        os.ftruncate(self._fd, self._cap)
        self._mm = mmap.mmap(self._fd, self._cap)

    def _name_id(self, name: str) -> int:
        nid = len(self._names)
        if nid >= self.NEW_NAME:
            raise DefinitionError(f"too many distinct metric names in one task (the limit is {self.NEW_NAME}); "
                            f"put the varying part in the value or the step, not in the name")
        raw = name.encode()
        size = _RECORD.size
        if self._pos + size + len(raw) > self._cap:
            self._grow(size + len(raw))
        self._mm[self._pos + size:self._pos + size + len(raw)] = raw
        _RECORD.pack_into(self._mm, self._pos, self.NEW_NAME, len(raw), 0.0, 0.0, _WRITTEN)
        self._pos += size + len(raw)
        self._names[name] = nid
        return nid

    def add(self, name: str, value: float, step: int | None) -> None:
        with self._lock:
            nid = self._names.get(name)
            if nid is None:
                nid = self._name_id(name)
            pos = self._pos
            if pos + _RECORD.size > self._cap:
                self._grow(_RECORD.size)
            if step is None:
                _RECORD.pack_into(self._mm, pos, nid, 0, value, time.time(), _WRITTEN)
            else:
                _RECORD.pack_into(self._mm, pos, nid, step, value, time.time(), _WRITTEN | _HAS_STEP)
            self._pos = pos + _RECORD.size

    def flush(self) -> None:
        """Nothing to do: points are in the file's pages as soon as they are logged."""

    def close(self) -> None:
        with self._lock:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            if self._fd >= 0:
                os.ftruncate(self._fd, self._pos)
                os.close(self._fd)
                self._fd = -1
            self._cap = 0

    def _forked(self) -> None:
        """In a process forked from the task: write a file of its own from now on."""
        self._lock = threading.Lock()
        self._mm = None  # the parent's mapping stays the parent's
        self._fd = -1
        self._pos = self._cap = 0
        self._names = {}
        self.path = f"{self._base}.{os.getpid()}"

    @classmethod
    def read(cls, path: str) -> list[tuple[str, int | None, float, float]]:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return []
        names: list[str] = []
        points = []
        size = _RECORD.size
        unpack = _RECORD.unpack_from
        pos = 0
        while pos + size <= len(data):
            nid, step, value, ts, flags = unpack(data, pos)
            if not flags & _WRITTEN:
                break
            pos += size
            if nid == cls.NEW_NAME:
                if pos + step > len(data):
                    break
                names.append(data[pos:pos + step].decode())
                pos += step
                continue
            if nid < len(names):
                points.append((names[nid], step if flags & _HAS_STEP else None, value, ts))
        return points

    @staticmethod
    def files(path: str) -> list[str]:
        """The task's spool and the ones beside it (forked workers, system metrics)."""
        folder, prefix = os.path.split(path)
        prefix += "."
        try:  # a prefix match, not glob: no pattern to compile for each task
            names = sorted(n for n in os.listdir(folder or ".") if n.startswith(prefix))
        except FileNotFoundError:
            names = []
        return [path] + [os.path.join(folder, n) for n in names]

    @classmethod
    def read_all(cls, path: str) -> list[tuple[str, int | None, float, float]]:
        return [point for f in cls.files(path) for point in cls.read(f)]


def _used_length(fd: int) -> int:
    """Where writing goes on in an existing spool: after its last written record."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    data = os.pread(fd, size, 0)
    pos, rec = 0, _RECORD.size
    while pos + rec <= size:
        nid, step, _v, _t, flags = _RECORD.unpack_from(data, pos)
        if not flags & _WRITTEN:
            break
        pos += rec + (step if nid == MetricSpool.NEW_NAME else 0)
    return pos


class Current:
    """The running task's identity and tracking calls. Outside a task every id is None."""

    def __init__(self) -> None:
        self._reset()
        self._activate_from_env()

    def __reduce__(self) -> str:
        # Pickled by reference: a flow class shipped by value (Ray, cloudpickle) must reach the
        # worker's own ``current``, not a copy of the scheduler's.
        return "current"

    def _activate_from_env(self) -> None:
        """A job of a project run (keel.yaml): the project runner names the job in the
        environment, so a plain script gets the same ``current`` as a flow step."""
        env = os.environ
        if not (env.get("KEEL_RUN_ID") and env.get("KEEL_STEP_NAME") and env.get("KEEL_TASK_ID")):
            return
        try:
            self._activate(flow_name=env.get("KEEL_FLOW_NAME", ""), run_id=str(int(env["KEEL_RUN_ID"])),
                           step_name=env["KEEL_STEP_NAME"], task_id=int(env["KEEL_TASK_ID"]),
                           retry_count=int(env.get("KEEL_RETRY_COUNT") or 0),
                           metrics_path=env.get("KEEL_METRICS_PATH") or None,
                           project_name=env.get("KEEL_FLOW_NAME", ""), job_name=env["KEEL_STEP_NAME"],
                           instance=int(env.get("KEEL_INSTANCE") or 0),
                           instances=int(env.get("KEEL_INSTANCES") or 1))
        except ValueError:
            self._reset()
            return
        self.__dict__["_tags_path"] = env.get("KEEL_TAGS_PATH") or None
        import atexit

        atexit.register(self._finish)

    def _reset(self) -> None:
        self.flow_name: str | None = None
        self.run_id: str | None = None  # a string, as in Metaflow: open(f).read() == current.run_id
        self.step_name: str | None = None
        self.task_id: str | None = None  # a string too, as in Metaflow
        self.retry_count: int = 0
        self.origin_run_id: str | None = None  # resume: the run this one resumes
        self.is_running_flow = False
        self._spool: MetricSpool | None = None
        self._sampler: Any = None
        self._tags: list[str] = []
        self._extras: dict[str, Any] = {}
        self.__dict__.pop("_card", None)  # a step's cards (@card), set by the task body
        self.__dict__.pop("_tags_path", None)  # set for project jobs by _activate_from_env

    def _activate(self, *, flow_name: str, run_id: int | str, step_name: str, task_id: int, retry_count: int,
                  metrics_path: str | None, origin_run_id: int | str | None = None,
                  system_metrics: float | None = None, **extras: Any) -> None:
        self._reset()
        self.flow_name, self.run_id, self.step_name = flow_name, str(run_id), step_name
        self.task_id, self.retry_count = str(task_id), retry_count
        self.origin_run_id = None if origin_run_id is None else str(origin_run_id)
        self.is_running_flow = True
        self._spool = MetricSpool(metrics_path) if metrics_path else None
        self._extras = extras
        if metrics_path:
            if system_metrics is None:  # not given by the run: read the settings (every KEEL_* variable) here
                settings = Settings.from_env()
                system_metrics = settings.system_metrics_every if settings.system_metrics else 0.0
            if system_metrics > 0:
                self._sampler = _sysmetrics.Sampler(self._spool, system_metrics).start()

    def __getattr__(self, name: str) -> Any:
        extras = self.__dict__.get("_extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(f"current has no attribute {name!r}")

    def get(self, key: str, default: Any = None) -> Any:
        """``current.get("project_name")``: the field, or ``default`` when there is none (as in Metaflow)."""
        return getattr(self, key, default)

    def __contains__(self, key: str) -> bool:
        """``"project_name" in current``: the field is set, as in Metaflow."""
        return getattr(self, key, None) is not None

    @property
    def tempdir(self) -> str:
        """A folder for temporary files (``METAFLOW_TEMPDIR``, else the working directory, as in Metaflow)."""
        return os.environ.get("METAFLOW_TEMPDIR") or "."

    @property
    def card(self) -> Any:
        """The task's cards (``@card``): ``current.card.append(Markdown("# hi"))``, ``refresh()``."""
        cards = self.__dict__.get("_card")
        if cards is None:
            from keel.cards import NoCards

            cards = NoCards()
        return cards

    @property
    def tags(self) -> frozenset[str]:
        """The run's tags, user and system (``user:NAME``, ...), and those this task added."""
        return frozenset(self._extras.get("run_tags", ())) | frozenset(self._tags)

    @property
    def pathspec(self) -> str | None:
        if self.flow_name is None:
            return None
        return f"{self.flow_name}/{self.run_id}/{self.step_name}/{self.task_id}"

    @property
    def data(self) -> Any:
        """The Data Engine (:class:`keel.data.engine.DataEngine`), recording this task as lineage."""
        key = (os.getpid(), self.pathspec, Settings.from_env())
        cached = self.__dict__.get("_data_engine")
        if cached is None or cached[0] != key:
            from keel.data.engine import DataEngine

            cached = (key, DataEngine.from_env(lineage=self.pathspec))
            self.__dict__["_data_engine"] = cached
        return cached[1]

    @property
    def spark(self) -> Any:
        """A SparkSession for this step or job: the spark add-on's cluster, else ``local[*]``."""
        from keel.addons.spark import session

        return session(app_name=self.pathspec or "keel")

    def _need_task(self, what: str) -> MetricSpool:
        if self._spool is None:
            raise DefinitionError(f"current.{what}() works only inside a running step or job")
        return self._spool

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record one point of metric ``name`` (optionally at training ``step``)."""
        spool = self._need_task("log_metric")
        shown = repr(name)[:60]
        if not isinstance(name, str) or not name.strip() or len(name) > 250 or not name.isprintable():
            raise DefinitionError(f"log_metric({shown}, ...): a metric name is a non-empty string of at most 250 "
                            f"printable characters on one line, e.g. \"val_loss\"")
        try:
            value = float(value)
        except (TypeError, ValueError, OverflowError):
            raise DefinitionError(f"log_metric({shown}, {repr(value)[:40]}): the value must be a number") from None
        if step is not None:
            import operator

            try:
                step = operator.index(step)  # int, numpy integers
            except TypeError:
                if not (isinstance(step, float) and float(step).is_integer()):
                    raise DefinitionError(f"log_metric({shown}, ..., step={repr(step)[:40]}): the step must be an "
                                    f"integer") from None
                step = int(step)
            if not -2**63 <= step < 2**63:
                raise DefinitionError(f"log_metric({shown}, ..., step={step}): the step is out of range; steps are "
                                f"64-bit integers (below 2**63)")
        if math.isnan(value):
            value = float("nan")
        spool.add(name, value, step)

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Record several metrics at once: ``current.log_metrics({"loss": l, "acc": a}, step=i)``."""
        for name, value in values.items():
            self.log_metric(name, value, step)

    def tag(self, *tags: str) -> None:
        """Add tags to the run this task belongs to."""
        self._need_task("tag")
        from keel.flow.tags import check_tags

        self._tags.extend(check_tags(tags))
        tags_path = self.__dict__.get("_tags_path")
        if tags_path:  # a project job: the runner reads this file when the job ends
            with open(tags_path, "a", encoding="utf-8") as fh:
                fh.write("".join(t.replace("\n", " ") + "\n" for t in tags))

    def queue(self, name: str, **settings: Any) -> Any:
        """A named queue of the queue add-on (``keel.addons.queue.Queue``): ``put``, ``get``, iterate."""
        from keel.addons.queue import queue

        return queue(name, **settings)

    def _finish(self, final: list[tuple[str, int | None, float, float]] | None = None) -> list[str]:
        """End the task's tracking; the tags it added. With ``final``, the system metrics' last
        points go there (the task's result carries them) instead of into the spool."""
        if self._sampler is not None:
            self._sampler.stop(final)
            self._sampler = None
        if self._spool is not None:
            self._spool.close()
        return list(self._tags)


current = Current()


def _after_fork_in_child() -> None:
    # A forked process (e.g. a parallel_map worker) gets a fresh lock and its own timer.
    spool = current.__dict__.get("_spool")
    if spool is not None:
        spool._forked()
    current.__dict__["_sampler"] = None  # the sampler thread did not come along


os.register_at_fork(after_in_child=_after_fork_in_child)
