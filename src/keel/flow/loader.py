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


def check_module_name(path: str) -> None:
    """Refuse a flow file named like a module Python or Keel imports (``json.py``, ``click.py``):
    importing it would hide that module from every library, and runs fail far from the cause."""
    name = os.path.splitext(os.path.basename(path))[0]
    taken = name in sys.stdlib_module_names or name == "keel"
    if not taken and name in sys.modules:
        module = sys.modules[name]
        known = getattr(module, "__file__", None)  # another flow file of that name loaded earlier is fine
        taken = (known is not None and not getattr(module, "__keel_flow_file__", False) and name != "__main__"
                 and os.path.abspath(known) != os.path.abspath(path))
    if taken:
        what = "Python's standard module" if name in sys.stdlib_module_names else "the installed module"
        raise UsageError(f"{path}: a flow file named {name}.py hides {what} {name!r} from every library that "
                         f"imports it (Keel too); rename the file, e.g. {name}_flow.py")
    shadows = shadowing_neighbours(path)
    if shadows:
        first = shadows[0]
        names = ", ".join(shadows[:5]) + (f" and {len(shadows) - 5} more" if len(shadows) > 5 else "")
        stem = first.rstrip("/").removesuffix(".py")
        raise UsageError(f"{names} beside {os.path.basename(path)} hide{'s' if len(shadows) == 1 else ''} "
                         f"Python's standard module{'s' if len(shadows) > 1 else ''} of that name from every "
                         f"library that imports {'it' if len(shadows) == 1 else 'them'} (the flow's folder comes "
                         f"first on sys.path; Keel imports them too); rename {'it' if len(shadows) == 1 else 'them'}"
                         f", e.g. {stem}_utils.py")


def shadowing_neighbours(path: str) -> list[str]:
    """The modules in the flow file's folder named like standard modules (``random.py``, ``json/``):
    with that folder first on ``sys.path`` they replace the real ones for every later import."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    found = []
    for entry in entries:
        stem, ext = os.path.splitext(entry)
        if ext == ".py" and stem in sys.stdlib_module_names and entry != os.path.basename(path):
            found.append(entry)
        elif not ext and entry in sys.stdlib_module_names and os.path.isfile(os.path.join(folder, entry,
                                                                                          "__init__.py")):
            found.append(entry + "/")
    return found


def load_flow_file(path: str, flow_name: str | None = None) -> type:
    """Import a flow file (its folder on sys.path) and return its FlowSpec subclass."""
    if not os.path.isfile(path):
        raise UsageError(f"no flow file {path!r}; give the path of a .py file that defines a FlowSpec")
    check_module_name(path)
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path!r} as Python")
    module = importlib.util.module_from_spec(spec)
    module.__keel_flow_file__ = True  # type: ignore[attr-defined]
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
