"""Caching of project jobs (``cache: true`` in keel.yaml, ``keel project run --cache``).

A job instance is a task of the project's run, so it goes through the same
:class:`~keel.runtime.cache.StepCache` machinery as a flow step (lookups, claims, entries,
``keel cache explain PROJECT/RUN/JOB``); only its key differs. The key of a job instance:

- ``definition``: the job's entrypoint or flow file, params, env and add-ons (not resources,
  retries, timeout or schedule, which do not change what it computes);
- ``instance``: its index and count (``KEEL_INSTANCE``/``KEEL_INSTANCES``);
- ``files``: the files named in the entrypoint that exist in the project folder (a Python file
  by its normalised AST, so comments and formatting do not count; any other by its bytes), or a
  flow job's flow file and the local modules it imports;
- ``upstream``: for each instance of the jobs it runs ``after`` in this run, its key (or
  "uncached") and the task that made its result: an upstream job that ran again (a miss, or a
  job without caching) makes its dependants miss; one taken from the cache lets them hit;
- ``python``: the Python minor version, and ``schema``: Keel's key schema.

The files a Python script job reads are recorded while it runs (``_readhook/sitecustomize.py``
on its PYTHONPATH, active with ``KEEL_RECORD_READS``) and kept with its entry with their
digests; a later lookup re-hashes them, so a changed input file is a miss.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import sys
from importlib.util import source_from_cache
from typing import Any

import xxhash

from keel.runtime.cache import CacheKey, StepCache
from keel.runtime.fingerprint import KEY_SCHEMA, _StripDocstrings, combine

#: The folder put first on a cached script job's PYTHONPATH.
READHOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_readhook")
_KEEL_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _digest_bytes(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


class JobCache(StepCache):
    """The step cache of a project run: keys of job instances instead of flow steps."""

    def __init__(self, *, project: Any, run_id: int, **kwargs: Any):
        super().__init__(flow=project.name, run_id=run_id, flow_cls=None, graph=None, params={}, **kwargs)
        self.project = project
        self._code: dict[tuple[str, int, int], str] = {}

    def enabled(self, step: str) -> bool:
        if self.settings.mode == "off":
            return False
        return self.settings.mode == "all" or bool(self.project.jobs[step].cache)

    def recompute(self, step: str) -> bool:
        return False

    def decorator(self, step: str) -> Any:
        return None

    def key(self, step: str, inputs: Any, frames: Any) -> CacheKey:
        raise AssertionError("a job's key is made by JobCache.job_key")

    def job_key(self, job: str, index: int, count: int, upstream: dict[str, str]) -> CacheKey:
        """The key of instance ``index`` of ``count`` of ``job``; ``upstream``: "JOB/INDEX" -> its key."""
        spec = self.project.jobs[job]
        definition = {"entrypoint": spec.entrypoint, "flow": spec.flow, "params": spec.params,
                      "env": {str(k): str(v) for k, v in spec.env.items()}, "addons": sorted(spec.addons)}
        parts = {
            "definition": _digest_bytes(json.dumps(definition, sort_keys=True, default=str).encode()),
            "instance": f"{index}/{count}",
            "files": combine(self._files_of(job)),
            "upstream": combine(upstream),
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "schema": str(KEY_SCHEMA),
        }
        return CacheKey(key=combine(parts), parts=parts)

    def record_entry(self, step: str, task_id: int, key: CacheKey, artifacts: dict[str, dict[str, Any]],
                     num_splits: int | None, reads: list[str]) -> None:
        named = set(self._named_files(step))  # in the key already, by AST: not again by bytes
        super().record_entry(step, task_id, key, artifacts, num_splits,
                             [r for r in reads if os.path.realpath(r) not in named])

    # -- the files a job's definition names -------------------------------------------------------------
    def _named_files(self, job: str) -> list[str]:
        spec = self.project.jobs[job]
        root = os.path.realpath(self.project.root)
        if spec.flow is not None:
            from keel.tracking.snapshot import local_imports

            flow_file = self.project.flow_path(job)
            folder = os.path.dirname(os.path.abspath(flow_file))
            return [os.path.realpath(os.path.join(folder, rel)) for rel in local_imports(flow_file)]
        return [p for p in (_named_path(root, word) for word in _words(spec.entrypoint or "")) if p]

    def _files_of(self, job: str) -> dict[str, str]:
        root = os.path.realpath(self.project.root)
        out = {}
        for path in self._named_files(job):
            digest = self._code_digest(path)
            if digest is not None:
                out[os.path.relpath(path, root)] = digest
        return out

    def _code_digest(self, path: str) -> str | None:
        try:
            st = os.stat(path)
            memo = (path, st.st_mtime_ns, st.st_size)
            if memo not in self._code:
                with open(path, "rb") as fh:
                    data = fh.read()
                self._code[memo] = _source_digest(path, data)
            return self._code[memo]
        except OSError:
            return None


def _source_digest(path: str, data: bytes) -> str:
    """A Python file by its AST without docstrings (comments and formatting do not count), else its bytes."""
    if path.endswith(".py"):
        try:
            tree = _StripDocstrings().visit(ast.parse(data, filename=path))
            return _digest_bytes(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
        except (SyntaxError, ValueError):
            pass
    return _digest_bytes(data)


def _words(entrypoint: str) -> list[str]:
    try:
        words = shlex.split(entrypoint)
    except ValueError:  # unbalanced quotes: the shell will say so; key what we can
        words = entrypoint.split()
    out = []
    for word in words:
        out.append(word)
        if word.startswith("-") and "=" in word:  # --config=conf.yaml
            out.append(word.split("=", 1)[1])
    return out


def _named_path(root: str, word: str) -> str | None:
    """``word`` as a file inside the project folder, or None."""
    if not word or word.startswith("-") and "=" not in word:
        return None
    path = os.path.realpath(os.path.join(root, word))
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        return None
    return path


def job_reads(reads_path: str, env: dict[str, str]) -> list[str]:
    """The files a script job's Python processes read (written by the read hook), without Keel's
    own store and package, Python's library and installed packages, and files that are gone; a
    module read from its bytecode cache counts as its source. Removes the list."""
    try:
        with open(reads_path, encoding="utf-8", errors="surrogateescape") as fh:
            lines = {line.rstrip("\n") for line in fh if line.strip()}
        os.unlink(reads_path)
    except FileNotFoundError:
        return []
    exclude = [_KEEL_DIR, READHOOK_DIR + os.sep]
    # Python's own library and installed packages: their versions are in the key already
    exclude += [os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)]
    for var in ("KEEL_HOME",):
        if env.get(var):
            exclude.append(os.path.abspath(env[var]) + os.sep)
    artifact_url = env.get("KEEL_ARTIFACT_URL", "")
    if artifact_url and "://" not in artifact_url:
        exclude.append(os.path.abspath(artifact_url) + os.sep)
    prefixes = tuple(exclude)
    return sorted({path for path in map(_source_of, lines)
                   if path and not path.startswith(prefixes) and os.path.isfile(path)})


def _source_of(path: str) -> str | None:
    """The file a read stands for: a module imported from its bytecode cache is its source (the
    .py is then only stat-ed, never opened), so an edit of a helper the job imports is a miss."""
    if not path.endswith(".pyc"):
        return path
    try:
        return source_from_cache(path)
    except ValueError:  # a .pyc outside __pycache__: no source to stand for
        return None
