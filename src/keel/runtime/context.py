"""Who runs a flow, in which namespace and project: what ``current`` tells a task about its run,
and the system tags the run is stored with (as Metaflow has them).

    user:alice                    every run: who started it (KEEL_USER, METAFLOW_USER, the login)
    runtime:dev                   every local run
    python_version:3.11.9
    project:weather               @project(name="weather")
    project_branch:user.alice     the branch: user.NAME, test.BRANCH (--branch), prod (--production)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from keel.errors import UsageError

_BRANCH = re.compile(r"^[a-z0-9_.-]{1,128}$")


def username() -> str:
    """The user a run belongs to: KEEL_USER, METAFLOW_USER, then the login name (one answer,
    :func:`keel.store.runs.user_name`, for runs, comments and the client's namespace)."""
    from keel.store.runs import user_name

    return user_name()


@dataclass(frozen=True)
class RunContext:
    """A run's identity beyond its id, fixed when it starts."""

    username: str
    namespace: str
    project_name: str | None = None
    branch_name: str | None = None
    is_production: bool = False
    system_tags: tuple[str, ...] = field(default_factory=tuple)

    def task_fields(self, flow: str, user_tags: list[str]) -> dict[str, Any]:
        """What ``current`` shows in every task of the run."""
        return {"username": self.username, "namespace": self.namespace, "project_name": self.project_name,
                "branch_name": self.branch_name, "is_production": self.is_production,
                "project_flow_name": f"{self.project_name}.{self.branch_name}.{flow}" if self.project_name else None,
                "run_tags": tuple(dict.fromkeys([*self.system_tags, *user_tags]))}


def run_context(flow_cls: type, branch: str | None = None, production: bool = False) -> RunContext:
    """The context of a new run of ``flow_cls`` (``--branch``/``--production`` need ``@project``)."""
    user = username()
    project = getattr(flow_cls, "_keel_project", None)
    tags = [f"user:{user}", "runtime:dev", f"python_version:{sys.version.split()[0]}"]
    if project is None:
        if branch or production:
            flag = "--production" if production else "--branch"
            raise UsageError(f"{flag} needs a project: add @project(name=...) to {flow_cls.__name__}")
        return RunContext(username=user, namespace=f"user:{user}", system_tags=tuple(tags))
    if branch is not None and not _BRANCH.match(branch):
        raise UsageError(f"--branch {branch!r}: use lowercase letters, digits, '_', '.' or '-'")
    if production:
        branch_name = f"prod.{branch}" if branch else "prod"
    elif branch:
        branch_name = f"test.{branch}"
    else:
        branch_name = f"user.{user}"
    tags += [f"project:{project}", f"project_branch:{branch_name}"]
    return RunContext(username=user, namespace=f"user:{user}", project_name=project, branch_name=branch_name,
                      is_production=production, system_tags=tuple(tags))
