"""What ``keel serve`` was asked to do: one frozen record, passed to the app and to every worker."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ServeOptions:
    """One endpoint. ``run_id`` None follows the flow's latest successful run."""

    flow: str
    artifact: str = "model"
    run_id: int | None = None
    name: str | None = None                # the model's name in /v2/models/{name}; default: the flow's
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_body: int = 10 * 1024 * 1024       # bytes
    workers: int = 1
    max_concurrency: int = 256
    max_batch_size: int = 0                # rows; 0: no micro-batching
    max_latency_ms: float = 5.0
    preprocess: str | None = None
    log_requests: bool = False
    log_table: str | None = None           # default: <model name>_requests
    log_flush_seconds: float = 1.0
    poll_seconds: float = 0.5
    metrics_dir: str | None = None         # --workers N: the folder where every worker keeps its metrics

    @property
    def model_name(self) -> str:
        return self.name or self.flow

    @property
    def request_table(self) -> str:
        from keel.serve.requestlog import default_table

        return self.log_table or default_table(self.model_name)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeOptions":
        return cls(**json.loads(text))
