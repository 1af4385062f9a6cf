"""Every error Keel raises, in one tree.

    KeelError
    ├── DefinitionError            a flow that cannot run as written, or a step that calls the
    │   │                          flow API wrongly (self.next, merge_artifacts, current.*)
    │   └── GraphError             .issues: every graph problem found, each with file:line
    ├── ProjectError               keel.yaml (and KEEL_ALERTS) problems, .issues like GraphError
    ├── YamlTreeError              YAML text Keel cannot read (.line); keel.yaml turns it into an issue
    ├── AlertError                 an alert rule built wrong in Python, an action that cannot be sent
    ├── UsageError                 bad input (parameter, pathspec, flag, setting); exit 2
    │   ├── ParameterError         a parameter value of the wrong type, or an unknown one
    │   ├── NotFoundError          an unknown flow, run, step or task (the dashboard's 404)
    │   ├── QueryError             a bad --where/--sort query; .column points at the mistake
    │   └── SettingsError          a KEEL_* environment variable that cannot be read
    ├── ExecutionError             a run that started and did not succeed
    │   ├── TaskFailed             a user step raised, crashed or timed out
    │   ├── StepTimeout            raised inside a step that ran past its @timeout (also a TimeoutError)
    │   ├── FailureHandledByCatch  what @catch stores when the task died without a Python exception
    │   ├── RunInterrupted         Ctrl-C or SIGTERM
    │   └── ParallelMapError       a parallel_map item failed and its error could not travel
    │       └── WorkerDied         a parallel_map worker ended without reporting
    ├── StoreError                 the store could not keep or give back something
    │   ├── ArtifactNotFound
    │   ├── ArtifactCorrupted      bytes on disk do not match their content hash
    │   ├── SerializationError     a value no serializer can store, or bytes none can decode
    │   └── MetadataError
    ├── DataError                  a Data Engine table that cannot be saved, read or queried
    │   └── DataNotFound           an unknown table or version (also a NotFoundError: exit 2)
    ├── ServeError                 a request a model endpoint cannot answer (an HTTP error)
    │   ├── BadInput               .field: what in the request is wrong; 4xx
    │   │   └── RequestTooLarge    a body over --max-body-bytes; 413
    │   └── ModelFailed            the model raised on valid input; 500
    ├── ExecutorError              an executor could not start or follow a task
    ├── Unfingerprintable          a value a cached step reads has no stable fingerprint (not cached)
    └── OutputError                a command's -o file could not be written (disk full, ...)

Messages name the object and its place, say what was expected and what was found, and
what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def clip(text: object, width: int = 40) -> str:
    """User input quoted in a message: a short, printable prefix (``'abc…'``), never the whole of it."""
    s = text if isinstance(text, str) else repr(text)
    shown = "".join(c if c.isprintable() else "?" for c in s[:width])
    return repr(shown + ("…" if len(s) > width else ""))


class KeelError(Exception):
    """Base of every error Keel raises on purpose."""


@dataclass(frozen=True)
class Issue:
    """One problem found while checking a definition, with where it is."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class DefinitionError(KeelError):
    """A flow that cannot run as written (bad decorator argument, bad parameter, ...), or a step
    that calls the flow API wrongly (``self.next`` twice, ``merge_artifacts`` outside a join,
    ``current.log_metric`` with a string, ...)."""


class _IssuesError(KeelError):
    """An error that carries every problem found at once."""

    title = "problems"
    shown = 50  # the message lists this many; ``.issues`` has every one

    def __init__(self, issues: list[Issue], title: str | None = None):
        self.issues = list(issues)
        head = title or f"{len(self.issues)} {self.title}"
        shown = [str(i) for i in self.issues[:self.shown]]
        if len(self.issues) > self.shown:  # thousands of jobs with one mistake each: the first ones tell
            shown.append(f"... and {len(self.issues) - self.shown:,} more like these (fix these first, then check again)")
        super().__init__(head + ":\n" + "\n".join(shown))


class GraphError(_IssuesError, DefinitionError):
    """The flow's graph is invalid; ``.issues`` lists every problem, each with file:line."""

    title = "problem(s) in the flow's graph"


class ProjectError(_IssuesError):
    """The project file is invalid; ``.issues`` lists every problem, each with file:line."""

    title = "problem(s) in the project file"


class YamlTreeError(KeelError, ValueError):
    """The text is not YAML Keel can read; ``line`` is 1-based. Raised by ``keel.flow.yamltree``;
    a project file reports it as one of its issues (a ProjectError)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


class AlertError(KeelError):
    """An alert rule that cannot be used (built from Python), or an action that cannot be sent."""


class UsageError(KeelError):
    """Bad input on the command line. The CLI prints the message alone and exits 2."""


class ParameterError(UsageError):
    """A parameter value that cannot be parsed, or a parameter the flow does not have."""


class NotFoundError(UsageError):
    """An unknown flow, run, step or task."""


class QueryError(UsageError):
    """A search query (``--where``, ``--sort``) that cannot be read; ``column`` is 1-based."""

    def __init__(self, message: str, query: str = "", column: int = 0):
        self.query, self.column = query, column
        where = f" at column {column}" if column else ""
        text = f"bad query{where}: {message}"
        if query and column:  # the query under a caret; a long one as the 70 characters around the mistake
            start = max(0, min(column - 35, len(query) - 70))
            shown = query[start:start + 70]
            lead, tail = ("…" if start else ""), ("…" if start + 70 < len(query) else "")
            text += f"\n  {lead}{shown}{tail}\n  {' ' * (column - 1 - start + len(lead))}^"
        super().__init__(text)


class SettingsError(UsageError):
    """A ``KEEL_*`` environment variable whose value cannot be read (see ``keel.settings``)."""


class ExecutionError(KeelError):
    """A run that started and did not succeed."""


class TaskFailed(ExecutionError):
    """A task of the run failed after its retries."""


class StepTimeout(ExecutionError, TimeoutError):
    """Raised inside a step that ran longer than its ``@timeout`` (``@catch`` can store it)."""


class FailureHandledByCatch(ExecutionError):
    """What ``@catch`` stores when the task died without a Python exception (a signal, os._exit)."""


class RunInterrupted(ExecutionError):
    """The run was stopped by Ctrl-C or SIGTERM."""


class ParallelMapError(ExecutionError):
    """An item of :func:`parallel_map` failed and its own exception could not be re-raised.

    ``index`` is the item's position in the input, ``item_repr`` its (truncated) repr and
    ``remote_traceback`` the worker's formatted traceback, when there is one.
    """

    def __init__(
        self, message: str, index: int | None = None, item_repr: str = "",
        remote_traceback: str = "",
    ):
        super().__init__(message)
        self.index = index
        self.item_repr = item_repr
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.index, self.item_repr, self.remote_traceback))


class WorkerDied(ParallelMapError):
    """A worker ended without reporting: ``os._exit``, a signal, the out-of-memory killer.

    ``exitcode`` follows :mod:`subprocess`: negative for the signal that killed it.
    """

    def __init__(
        self, message: str, index: int | None = None, item_repr: str = "",
        exitcode: int | None = None,
    ):
        super().__init__(message, index, item_repr)
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.index, self.item_repr, self.exitcode))


class StoreError(KeelError):
    """The store could not keep or give back something."""


class ArtifactNotFound(StoreError):
    """No artifact with that name or content key."""


class ArtifactCorrupted(StoreError):
    """An artifact's bytes no longer match the hash they were stored under."""


class SerializationError(StoreError):
    """A value that no serializer can store, or stored bytes that cannot be decoded."""


class MetadataError(StoreError):
    """The metadata database could not be read or written."""


class DataError(KeelError):
    """A Data Engine table that cannot be saved, read, queried or exported."""


class DataNotFound(NotFoundError, DataError):
    """No Data Engine table, or no such version of it."""


class ServeError(KeelError):
    """A request a model endpoint cannot answer; ``status`` is the HTTP status it gets."""

    status = 500


class BadInput(ServeError):
    """A request the model cannot take; ``field`` is where (``instances[3].age``). Becomes a 4xx."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.status = field, message, status


class RequestTooLarge(BadInput):
    """A request body over the endpoint's limit (HTTP 413)."""

    def __init__(self, limit: int):
        super().__init__("body", f"the request body is over the limit of {limit} bytes", status=413)
        self.limit = limit


class ModelFailed(ServeError):
    """The model raised on input that passed the checks (HTTP 500; the traceback is logged)."""


class ExecutorError(KeelError):
    """An executor could not start or follow a task."""


class Unfingerprintable(KeelError):
    """A value a cached step reads has no deterministic fingerprint; the message names it. The
    step cache catches it and runs the step uncached, with a warning."""


class OutputError(KeelError):
    """A command's output file (``-o PATH``) could not be written; nothing was left half-written."""
