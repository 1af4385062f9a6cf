"""Every error Keel raises, in one tree.

    KeelError
    ├── DefinitionError            a flow that cannot run as written
    │   └── GraphError             .issues: every graph problem found, each with file:line
    ├── ProjectError               keel.yaml (and KEEL_ALERTS) problems, .issues like GraphError
    ├── AlertError                 an alert rule built wrong in Python, an action that cannot be sent
    ├── UsageError                 bad command-line input (parameter, pathspec, flag); exit 2
    │   ├── ParameterError         a parameter value of the wrong type, or an unknown one
    │   ├── NotFoundError          an unknown flow, run, step or task
    │   └── QueryError             a bad --where/--sort query; .column points at the mistake
    ├── ExecutionError             a run that started and did not succeed
    │   ├── TaskFailed             a user step raised, crashed or timed out
    │   ├── StepTimeout            raised inside a step that ran past its @timeout (also a TimeoutError)
    │   ├── FailureHandledByCatch  what @catch stores when the task died without a Python exception
    │   └── RunInterrupted         Ctrl-C or SIGTERM
    ├── StoreError                 the store could not keep or give back something
    │   ├── ArtifactNotFound
    │   ├── ArtifactCorrupted      bytes on disk do not match their content hash
    │   └── MetadataError
    ├── DataError                  a Data Engine table that cannot be saved, read or queried
    │   └── DataNotFound           an unknown table or version (also a NotFoundError: exit 2)
    └── ExecutorError              an executor could not start or follow a task

Messages name the object and its place, say what was expected and what was found, and
what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """A flow that cannot run as written (bad decorator argument, bad parameter, ...)."""


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


class StoreError(KeelError):
    """The store could not keep or give back something."""


class ArtifactNotFound(StoreError):
    """No artifact with that name or content key."""


class ArtifactCorrupted(StoreError):
    """An artifact's bytes no longer match the hash they were stored under."""


class MetadataError(StoreError):
    """The metadata database could not be read or written."""


class DataError(KeelError):
    """A Data Engine table that cannot be saved, read, queried or exported."""


class DataNotFound(NotFoundError, DataError):
    """No Data Engine table, or no such version of it."""


class ExecutorError(KeelError):
    """An executor could not start or follow a task."""
