"""Load a flow file: import it (its folder on sys.path) and find its FlowSpec subclass.

Used by ``keel run FILE``, project flow jobs, reproduce and the kubernetes task entry.
Pure import machinery: nothing here touches the runtime or the store.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys

from keel.errors import DefinitionError, UsageError
from keel.flow.spec import FlowSpec


def load_flow_file(path: str, flow_name: str | None = None) -> type:
    """Import a flow file (its folder on sys.path) and return its FlowSpec subclass."""
    if not os.path.isfile(path):
        raise UsageError(f"no flow file {path!r}; give the path of a .py file that defines a FlowSpec")
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise DefinitionError(f"{path}:{exc.lineno}: {exc.msg}") from None
    flows = [v for v in vars(module).values()
             if inspect.isclass(v) and issubclass(v, FlowSpec) and v is not FlowSpec and v.__module__ == name]
    if flow_name:
        flows = [f for f in flows if f.__name__ == flow_name]
    leaves = [f for f in flows if not any(o is not f and issubclass(o, f) for o in flows)]
    if not leaves:
        raise UsageError(f"{path} defines no FlowSpec subclass" + (f" named {flow_name!r}" if flow_name else ""))
    if len(leaves) > 1:
        names = ", ".join(f.__name__ for f in leaves)
        raise UsageError(f"{path} defines several flows ({names}); pick one with --flow NAME")
    return leaves[0]
