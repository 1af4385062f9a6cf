"""Code snapshots: the flow file and the local modules it imports, kept with every run.

``take_snapshot(flow_file, artifacts)`` follows the flow file's imports (and theirs) to the
``.py`` files in the flow's folder, leaves out what ``.gitignore`` ignores, stores each file
content-addressed (an unchanged file is stored once across all runs) and a JSON manifest
``{"entry": "flow.py", "files": {"flow.py": {"key", "size"}, "lib/util.py": ...}}``. The run
keeps the manifest's key in its environment (``environment["snapshot"]``).

The snapshot is capped at ``KEEL_SNAPSHOT_MAX_MB`` (default 5 MB); past it only the flow file
is kept and the run says so. ``unpack(store, key, folder)`` writes the files back.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import subprocess
from pathlib import Path
from typing import Any

DEFAULT_MAX_MB = 5.0
MANIFEST_VERSION = 1


def local_imports(flow_file: str) -> list[str]:
    """The flow file and every .py file under its folder that it imports, directly or not
    (paths relative to the folder, the flow file first)."""
    root = Path(flow_file).resolve().parent
    entry = Path(flow_file).resolve()
    seen: dict[Path, None] = {entry: None}
    todo = [entry]
    while todo:
        path = todo.pop()
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        for found in _imported_files(tree, path, root):
            if found not in seen:
                seen[found] = None
                todo.append(found)
    return [str(p.relative_to(root)) for p in seen]


def _imported_files(tree: ast.AST, path: Path, root: Path) -> list[Path]:
    out: list[Path] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out += _module_files(root, alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                try:
                    parts = list(base.relative_to(root).parts)
                except ValueError:
                    continue
            else:
                parts = []
            mod = parts + (node.module.split(".") if node.module else [])
            out += _module_files(root, mod)
            for alias in node.names:  # from pkg import submodule
                if alias.name != "*":
                    out += _module_files(root, mod + [alias.name], only_last=True)
    return out


def _module_files(root: Path, parts: list[str], only_last: bool = False) -> list[Path]:
    """The files of module ``a.b.c`` under root: a/__init__.py, a/b/__init__.py, a/b/c.py (those that exist)."""
    out: list[Path] = []
    if not parts:
        return out
    folder = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        as_file = folder / f"{part}.py"
        as_pkg = folder / part
        if last and as_file.is_file():
            out.append(as_file.resolve())
        elif as_pkg.is_dir():
            init = as_pkg / "__init__.py"
            if init.is_file() and (last or not only_last):
                out.append(init.resolve())
            folder = as_pkg
            continue
        break
    return out


def _ignored(root: Path, rel_paths: list[str]) -> set[str]:
    """Which of these paths .gitignore ignores: git's own answer in a repository, else a
    reading of root/.gitignore."""
    if not rel_paths:
        return set()
    try:
        proc = subprocess.run(["git", "check-ignore", "--stdin", "-z"], cwd=root, input="\0".join(rel_paths),
                              capture_output=True, text=True, timeout=10)
        if proc.returncode in (0, 1):
            return {p for p in proc.stdout.split("\0") if p}
    except (OSError, subprocess.SubprocessError):
        pass
    patterns = []
    try:
        for line in (root / ".gitignore").read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "!")):
                patterns.append(line)
    except OSError:
        return set()
    out = set()
    for rel in rel_paths:
        parts = Path(rel).parts
        for pat in patterns:
            anchored = "/" in pat.rstrip("/")
            pat = pat.strip("/")
            if anchored:
                hit = any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1))
            else:
                hit = any(fnmatch.fnmatch(p, pat) for p in parts)
            if hit:
                out.add(rel)
                break
    return out


def max_bytes() -> int:
    from keel.settings import Settings

    return int(Settings.from_env().snapshot_max_mb * 2**20)


def take_snapshot(flow_file: str, artifacts: Any) -> tuple[dict[str, Any], str | None]:
    """Store the snapshot; returns (what the run keeps in environment["snapshot"], a warning or None)."""
    root = Path(flow_file).resolve().parent
    files = local_imports(flow_file)
    entry = files[0]
    ignored = _ignored(root, files[1:])
    files = [entry] + [f for f in files[1:] if f not in ignored]
    sizes = {f: (root / f).stat().st_size for f in files}
    total = sum(sizes.values())
    cap = max_bytes()
    warning = None
    if total > cap:
        warning = (f"the code snapshot of {entry} would be {total / 2**20:.1f} MB ({len(files)} files), over the "
                   f"{round(cap / 2**20, 3):g} MB cap: keeping only {entry}. Raise the cap with KEEL_SNAPSHOT_MAX_MB="
                   f"{max(1, int(total / 2**20) + 1)}")
        files = [entry]
    manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "entry": entry, "files": {}}
    for rel in files:
        data = (root / rel).read_bytes()
        manifest["files"][rel] = {"key": artifacts.put_bytes(data), "size": len(data)}
    if ignored:
        manifest["ignored"] = sorted(ignored)
    if warning:
        manifest["truncated"] = warning
    key = artifacts.put_bytes(json.dumps(manifest, sort_keys=True).encode())
    kept = {"key": key, "entry": entry, "files": len(manifest["files"]),
            "bytes": sum(f["size"] for f in manifest["files"].values())}
    if warning:
        kept["truncated"] = True
    return kept, warning


def load_manifest(store: Any, key: str) -> dict[str, Any]:
    artifacts = store.artifacts if hasattr(store, "artifacts") else store
    return json.loads(artifacts.get_bytes(key, what="code snapshot manifest"))


def unpack(store: Any, key: str, folder: str | Path) -> Path:
    """Write the snapshot's files under ``folder``; returns the entry (flow file) path."""
    artifacts = store.artifacts if hasattr(store, "artifacts") else store
    manifest = load_manifest(artifacts, key)
    folder = Path(folder)
    for rel, info in manifest["files"].items():
        target = (folder / rel).resolve()
        if folder.resolve() not in target.parents:
            raise ValueError(f"snapshot path {rel!r} leaves the folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(artifacts.get_bytes(info["key"], what=f"snapshot file {rel}"))
    return folder / manifest["entry"]
