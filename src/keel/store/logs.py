"""Task logs: each task's stdout and stderr as files, appended to while the task runs."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO


class LogStore:
    """Log files under ``root``: ``root/FLOW/RUN/STEP/TASK.stdout`` and ``.stderr``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, flow: str, run_id: int, step: str, task_id: int, stream: str = "stdout") -> Path:
        if stream not in ("stdout", "stderr"):
            raise ValueError(stream)
        return self.root / flow / str(run_id) / step / f"{task_id}.{stream}"

    def open_for_append(self, flow: str, run_id: int, step: str, task_id: int, stream: str) -> BinaryIO:
        path = self.path(flow, run_id, step, task_id, stream)
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab", buffering=0)

    def read(self, flow: str, run_id: int, step: str, task_id: int, stream: str = "stdout") -> str:
        try:
            return self.path(flow, run_id, step, task_id, stream).read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
