"""How an endpoint starts and lives: the lifespan, the frozen heap, FastAPI built on first use."""

from __future__ import annotations

import asyncio
import gc
import time

from keel.serve.app import build_app
from keel.serve.follow import ModelSlot
from keel.serve.model import LoadedModel, Signature
from keel.serve.options import ServeOptions


def _model(run_id: int) -> LoadedModel:
    return LoadedModel(flow="F", run_id=run_id, step="end", artifact="model", key=f"k{run_id}",
                       model=lambda x: [0] * len(x), signature=Signature(width=1))


def test_the_heap_is_frozen_when_the_server_starts_and_the_lifespan_ends_cleanly():
    options = ServeOptions(flow="F", run_id=1, artifact="model", max_batch_size=4)
    app = build_app(options, ModelSlot(_model(1)))
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict] = []
    frozen: list[int] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)
        frozen.append(gc.get_freeze_count())

    gc.unfreeze()
    try:
        asyncio.run(app({"type": "lifespan"}, receive, send))
    finally:
        gc.unfreeze()
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert frozen[0] > 0


def test_after_a_swap_the_follower_collects_the_old_model_and_freezes_again(monkeypatch):
    import keel.serve.follow as follow

    newest = [1]
    slot = ModelSlot(_model(1), loader=_model, interval=0.01)
    monkeypatch.setattr(follow, "latest_successful_run_id", lambda flow: newest[0])   # the store's answer
    gc.unfreeze()
    try:
        slot.follow()
        newest[0] = 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (slot.swaps == 1 and gc.get_freeze_count() > 0):
            time.sleep(0.01)   # poll interval
        assert slot.current.run_id == 2 and gc.get_freeze_count() > 0
    finally:
        slot.stop()
        gc.unfreeze()


def test_a_route_that_cannot_be_built_is_a_500_with_a_request_id_and_predictions_still_work(monkeypatch):
    import json

    import keel.serve.routes as routes

    def broken(*args: object) -> None:
        raise ImportError("no module named 'fastapi'")

    monkeypatch.setattr(routes, "build_fastapi", broken)   # as a broken install of the serve extra would
    options = ServeOptions(flow="F", run_id=1, artifact="model")
    app = build_app(options, ModelSlot(_model(1)))

    async def call(method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    async def main() -> list[tuple[int, dict]]:
        return [await call("GET", "/docs"), await call("POST", "/predict", b'{"instances": [[1.0]]}')]

    (docs_status, docs), (status, answer) = asyncio.run(main())
    assert docs_status == 500 and "request id" in docs["error"] and docs["request_id"]
    assert status == 200 and answer["predictions"] == [0]
