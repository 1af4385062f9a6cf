"""The Spark add-on: a standalone cluster for a job or step, and ``current.spark``.

    with SparkCluster(SparkSettings(workers=2, worker_cores=1, worker_memory="1g")) as cluster:
        env = cluster.environment()          # KEEL_SPARK_MASTER, KEEL_SPARK_CONF, KEEL_SPARK_UI
        ...                                  # the job's `current.spark` connects to it

The master and workers are JVMs started with pyspark's own ``spark-class`` (no separate
Spark install), bound to 127.0.0.1 on ports chosen free, each in a process group of its own
that dies with the process that started it (``PR_SET_PDEATHSIG``), and stopped on exit, on
failure, or when the run is killed. ``master: spark://host:7077`` uses an existing cluster and
``master: local[N]`` runs Spark inside the task: neither starts anything.

Executors are sized to fit the workers (``spark.executor.memory``/``cores`` no larger than a
worker's), so an application never waits for resources the cluster lacks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from keel.errors import ExecutorError, UsageError

__all__ = ["SparkCluster", "SparkSettings", "session"]

_MEMORY = re.compile(r"(\d+)([kmgt]?)b?", re.IGNORECASE)
_START_TIMEOUT = 120.0


@dataclass(frozen=True)
class SparkSettings:
    """What the add-on (``addons: {spark: {...}}``) or ``@spark(...)`` asks for."""

    master: str | None = None        # None: start a cluster; "local[N]" or "spark://..." otherwise
    workers: int = 1
    worker_cores: int = 1
    worker_memory: str = "1g"
    config: tuple[tuple[str, str], ...] = ()   # extra Spark settings for the session

    @property
    def starts_cluster(self) -> bool:
        return self.master is None

    @classmethod
    def from_mapping(cls, values: Any) -> "SparkSettings":
        if values is not None and not isinstance(values, dict):  # a pydantic model of keel.yaml
            values = values.model_dump() if hasattr(values, "model_dump") else vars(values)
        values = {k: v for k, v in dict(values or {}).items() if v is not None}
        if "master" not in values and "workers" not in values:
            values["master"] = "local[*]"    # an add-on with no cluster asked for runs in the task
        memory = values.get("worker_memory", "1g")
        config = tuple(sorted((str(k), str(v)) for k, v in dict(values.get("config") or {}).items()))
        settings = cls(master=values.get("master"), workers=int(values.get("workers", 1)), config=config,
                       worker_cores=int(values.get("worker_cores", 1)),
                       worker_memory=str(memory) if not isinstance(memory, int) else f"{memory}m")
        settings.memory_mb()
        return settings

    def memory_mb(self) -> int:
        m = _MEMORY.fullmatch(self.worker_memory.strip())
        if m is None:
            raise UsageError(f"spark worker_memory {self.worker_memory!r}: write a size like 512m or 2g")
        n, unit = int(m.group(1)), m.group(2).lower()
        return {"": n // (1024 * 1024), "k": n // 1024, "m": n, "g": n * 1024, "t": n * 1024 * 1024}[unit]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spark_home() -> str:
    try:
        import pyspark
    except ImportError:
        raise UsageError("the spark add-on needs pyspark: pip install 'keel[spark]'") from None
    return os.path.dirname(pyspark.__file__)


def _die_with_parent() -> None:
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class SparkCluster:
    """A Spark standalone master and ``workers`` workers on 127.0.0.1, for one job or step."""

    def __init__(self, settings: SparkSettings, *, log_dir: str | None = None):
        self.settings = settings
        self.master_url = ""
        self.ui_url = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._owned_log_dir = log_dir is None
        self._log_dir = log_dir or tempfile.mkdtemp(prefix="keel-spark-")

    def __enter__(self) -> "SparkCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "SparkCluster":
        home = _spark_home()
        spark_class = os.path.join(home, "bin", "spark-class")
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ExecutorError("the spark add-on needs Java 17 or later: install a JDK (apt-get install "
                                "openjdk-17-jre-headless) or set JAVA_HOME")
        env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
               "SPARK_LOG_DIR": self._log_dir, "SPARK_WORKER_DIR": os.path.join(self._log_dir, "work")}
        port, web = _free_port(), _free_port()
        self.master_url = f"spark://127.0.0.1:{port}"
        self.ui_url = f"http://127.0.0.1:{web}"
        try:
            self._spawn([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                         "--port", str(port), "--webui-port", str(web)], env, "master")
            self._wait(lambda: self._status() is not None, "the Spark master to listen")
            for i in range(self.settings.workers):
                self._spawn([spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                             "--port", str(_free_port()), "--webui-port", str(_free_port()),
                             "--cores", str(self.settings.worker_cores),
                             "--memory", f"{self.settings.memory_mb()}m", self.master_url], env, f"worker{i}")
            self._wait(lambda: len([w for w in (self._status() or {}).get("workers", [])
                                    if w.get("state") == "ALIVE"]) >= self.settings.workers,
                       f"{self.settings.workers} Spark worker(s) to register")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, cmd: list[str], env: dict[str, str], name: str) -> None:
        log = open(os.path.join(self._log_dir, f"{name}.log"), "ab")
        try:
            self._procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent))
        finally:
            log.close()

    def _status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.ui_url + "/json/", timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def _wait(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while not ready():
            dead = [p for p in self._procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = "a Spark process exited" if dead else f"nothing after {_START_TIMEOUT:.0f} s"
                raise ExecutorError(f"waiting for {what}: {why}. Logs: {self._log_dir}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop every JVM of the cluster (TERM, then KILL after 10 s)."""
        for p in self._procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in self._procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self._procs = []
        if self._owned_log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)

    def executor_conf(self) -> dict[str, str]:
        """Executors that fit a worker: its cores, and its memory less nothing (Spark reserves
        its own overhead inside the heap)."""
        return {"spark.executor.cores": str(self.settings.worker_cores),
                "spark.executor.memory": f"{self.settings.memory_mb()}m",
                "spark.cores.max": str(self.settings.worker_cores * self.settings.workers)}

    def environment(self) -> dict[str, str]:
        """What a job needs to reach the cluster through ``current.spark``."""
        return {"KEEL_SPARK_MASTER": self.master_url, "KEEL_SPARK_UI": self.ui_url,
                "KEEL_SPARK_CONF": json.dumps({**dict(self.settings.config), **self.executor_conf()})}


def environment_for(settings: SparkSettings) -> dict[str, str]:
    """The environment of a job whose add-on uses an existing master or ``local[N]``."""
    return {"KEEL_SPARK_MASTER": settings.master or "local[*]", "KEEL_SPARK_CONF": json.dumps(dict(settings.config))}


def job_command(addon: Any, argv: list[str]) -> list[str]:
    """A project job's command, run under the add-on: ``python -m keel.addons.spark SETTINGS -- ARGV``."""
    settings = SparkSettings.from_mapping(addon)
    payload = json.dumps({"master": settings.master, "workers": settings.workers,
                          "worker_cores": settings.worker_cores, "worker_memory": settings.worker_memory,
                          "config": dict(settings.config)})
    return [sys.executable, "-m", "keel.addons.spark", payload, "--", *argv]


def _main(argv: list[str]) -> int:
    """Start the cluster, run the job with its environment, stop the cluster (also on SIGTERM)."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m keel.addons.spark SETTINGS_JSON -- COMMAND...", file=sys.stderr)
        return 2
    settings = SparkSettings.from_mapping(json.loads(argv[0]))

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    cluster = None
    try:
        if settings.starts_cluster:
            cluster = SparkCluster(settings).start()
            env = cluster.environment()
            print(f"Spark cluster for this job: master {cluster.master_url}, UI {cluster.ui_url}",
                  file=sys.stderr, flush=True)
            record_link("spark_ui", cluster.ui_url, _job_identity())
        else:
            env = environment_for(settings)
        child = subprocess.Popen(argv[2:], env={**os.environ, **env})
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.terminate()
            child.wait()
            return 143
    except KeyboardInterrupt:
        return 143
    except (ExecutorError, UsageError) as exc:
        print(f"keel: spark add-on: {exc}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()


@contextlib.contextmanager
def step_cluster(attributes: dict[str, Any]) -> Iterator[SparkCluster | None]:
    """For a ``@spark`` step: start its cluster (or point at its master), set the environment
    ``current.spark`` reads, and stop the session and every JVM when the step ends."""
    settings = SparkSettings.from_mapping(attributes)
    saved = {k: os.environ.get(k) for k in ("KEEL_SPARK_MASTER", "KEEL_SPARK_UI", "KEEL_SPARK_CONF")}
    cluster = SparkCluster(settings).start() if settings.starts_cluster else None
    try:
        env = cluster.environment() if cluster else environment_for(settings)
        os.environ.update(env)
        if cluster:
            print(f"Spark cluster for this task: master {cluster.master_url}, UI {cluster.ui_url}",
                  file=sys.stderr, flush=True)
            record_link("spark_ui", cluster.ui_url, _task_identity())
        yield cluster
    finally:
        stop_session()
        if cluster:
            cluster.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stop_session() -> None:
    """Stop this process's SparkSession, if it has one (its driver must go before the cluster)."""
    if "pyspark" not in sys.modules:
        return
    from pyspark.sql import SparkSession

    _forget_inherited_session()
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


_session_pid: int | None = None


def _forget_inherited_session() -> None:
    """A task forked from a process that had a SparkSession must not talk to that process's
    JVM through the inherited gateway socket (it hangs): start afresh in this process."""
    global _session_pid
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is not None and _session_pid not in (None, os.getpid()):
        SparkContext._active_spark_context = None
        SparkContext._gateway = None
        SparkContext._jvm = None
        SparkSession._instantiatedSession = None
        SparkSession._activeSession = None
    _session_pid = os.getpid()


def session(app_name: str = "keel") -> Any:
    """A SparkSession on ``KEEL_SPARK_MASTER`` (default ``local[*]``), set up for the Data Engine:
    UTC session time zone and Arrow transfers; ``KEEL_SPARK_CONF`` (JSON) adds settings."""
    _spark_home()
    from pyspark.sql import SparkSession

    master = os.environ.get("KEEL_SPARK_MASTER") or "local[*]"
    _forget_inherited_session()
    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master == master:
        return active
    builder = SparkSession.builder.master(master).appName(app_name)
    conf = {"spark.sql.session.timeZone": "UTC", "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}
    try:
        conf.update(json.loads(os.environ.get("KEEL_SPARK_CONF") or "{}"))
    except ValueError:
        raise UsageError("KEEL_SPARK_CONF must be a JSON object of Spark settings") from None
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    ui = spark.sparkContext.uiWebUrl
    cluster_ui = os.environ.get("KEEL_SPARK_UI")
    print(f"Spark: master {master}" + (f", cluster UI {cluster_ui}" if cluster_ui else "")
          + (f", application UI {ui}" if ui else ""), flush=True)
    if ui:
        record_link("spark_app_ui", ui, _task_identity() or _job_identity())
    return spark


def _task_identity() -> tuple[str, int, int] | None:
    """(flow, run_id, task_id) of the task running in this process, if any."""
    from keel.runtime.current import current

    if current.flow_name is None or current.run_id is None or current.task_id is None:
        return None
    return current.flow_name, int(current.run_id), int(current.task_id)


def _job_identity() -> tuple[str, int, int] | None:
    """(project, run_id, task_id) of the project job whose environment this process has, if any."""
    env = os.environ
    try:
        return env["KEEL_FLOW_NAME"], int(env["KEEL_RUN_ID"]), int(env["KEEL_TASK_ID"])
    except (KeyError, ValueError):
        return None


def record_link(name: str, url: str, task: tuple[str, int, int] | None) -> None:
    """Keep ``url`` with the task in the store (``keel show`` and the dashboard list it).
    Best effort: a store that cannot take it costs a warning on stderr, never the task."""
    if task is None or not url:
        return
    try:
        from keel.store import Store

        store = Store.from_env()
        try:
            store.metadata.links.add(*task, name, url)
        finally:
            store.metadata.close()
    except Exception as exc:  # the Spark UI address must never fail the task
        print(f"keel: could not record the {name} address with the task: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
