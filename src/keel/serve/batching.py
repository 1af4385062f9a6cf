"""Opt-in micro-batching: requests that arrive together share one model call.

A batch closes when it holds ``max_rows`` rows or ``max_latency`` seconds after its first
request arrived, whichever is first. Requests checked against different models (a swap in
between) never share a batch. The model runs in a worker thread so the event loop keeps
accepting requests meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from keel.serve.model import LoadedModel, concat_inputs


@dataclass
class _Item:
    model: LoadedModel
    x: Any
    rows: int
    done: asyncio.Future


class MicroBatcher:
    def __init__(self, max_rows: int, max_latency: float, on_batch: Callable[[int], None] | None = None):
        self.max_rows = max_rows
        self.max_latency = max_latency
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._carry: _Item | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def predict(self, model: LoadedModel, x: Any) -> list[Any]:
        assert self._queue is not None
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(model, x, len(x), fut))
        return await fut

    async def _next_batch(self) -> list[_Item]:
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self.max_latency
        while rows < self.max_rows:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), left)
            except asyncio.TimeoutError:
                break
            if item.model is not first.model or rows + item.rows > self.max_rows:
                self._carry = item              # starts the next batch
                break
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            model = batch[0].model
            rows = sum(i.rows for i in batch)
            if self._on_batch is not None:
                self._on_batch(rows)
            try:
                x = concat_inputs([i.x for i in batch]) if len(batch) > 1 else batch[0].x
                out = await asyncio.to_thread(model.predict, x)
            except Exception as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                continue
            start = 0
            for item in batch:
                if not item.done.done():
                    item.done.set_result(out[start:start + item.rows])
                start += item.rows
