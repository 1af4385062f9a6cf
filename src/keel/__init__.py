"""Keel: machine-learning pipelines on a laptop or a Ray cluster, every run tracked.

Names are resolved on first use so that ``import keel`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "FlowSpec": "keel.flow.spec",
    "step": "keel.flow.decorators",
    "resources": "keel.flow.decorators",
    "cache": "keel.flow.decorators",
    "retry": "keel.flow.decorators",
    "catch": "keel.flow.decorators",
    "timeout": "keel.flow.decorators",
    "environment": "keel.flow.decorators",
    "ray": "keel.flow.decorators",
    "kubernetes": "keel.flow.decorators",
    "project": "keel.flow.decorators",
    "card": "keel.flow.decorators",
    "spark": "keel.flow.decorators",
    "Parameter": "keel.flow.parameters",
    "IncludeFile": "keel.flow.parameters",
    "JSONType": "keel.flow.parameters",
    "Config": "keel.flow.parameters",
    "config_expr": "keel.flow.parameters",
    "current": "keel.runtime.current",
    "parallel_map": "keel.runtime.parallel",
    "queue": "keel.addons.queue",
    "Flow": "keel.client.core",
    "Run": "keel.client.core",
    "Step": "keel.client.core",
    "Task": "keel.client.core",
    "namespace": "keel.client.core",
    "get_namespace": "keel.client.core",
    "default_namespace": "keel.client.core",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
