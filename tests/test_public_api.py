"""The public surface of `keel` (pinned) and what `import keel` costs."""

from __future__ import annotations

import json
import subprocess
import sys

import keel

PUBLIC = ["Config", "Flow", "FlowSpec", "IncludeFile", "JSONType", "Parameter", "Run", "Step", "Task", "cache", "card",
          "catch", "config_expr", "current", "default_namespace", "environment", "get_namespace", "kubernetes",
          "namespace", "parallel_map", "project", "queue", "ray", "resources", "retry", "spark", "step", "timeout"]


def test_all_is_sorted_and_pinned():
    assert keel.__all__ == sorted(keel.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(keel, name) is not None


def test_import_keel_pulls_in_no_heavy_library():
    code = ("import sys, json; before = set(sys.modules); import keel; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    heavy = {"sqlalchemy", "rich", "numpy", "pandas", "pyarrow", "click", "pydantic", "ray", "cloudpickle",
             "psutil", "ruamel", "xxhash", "yaml"}
    assert not heavy & {m.split(".")[0] for m in loaded}
    assert len(loaded) < 20, loaded


def test_flow_definition_imports_no_store_or_runtime():
    code = ("import sys, json; from keel import FlowSpec, step, Parameter, resources; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('keel', 'sqlalchemy', 'rich')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert not {m for m in loaded if m.startswith(("keel.store", "keel.runtime", "sqlalchemy", "rich"))}
