"""Opt-in micro-batching: requests that arrive together share one model call.

A batch closes when it holds ``max_rows`` rows or ``max_latency`` seconds after its first
request arrived, whichever is first. Requests checked against different models (a swap in
between) never share a batch.

It is driven by callbacks on the event loop, not by a consumer task: a request appends its
checked rows and, when the batch is full or its deadline passed, the batch starts at once;
otherwise one timer waits for the deadline. Deadlines are read from ``time.perf_counter``, not
``loop.time()``: uvloop's loop time has millisecond steps and stands still while one loop pass
handles many requests, so a deadline checked against it is noticed late. Rows are joined as plain lists and the model's
input (a DataFrame or an array) is built once per batch, in the model's thread. One model
call runs at a time, in a thread of its own, so the event loop keeps reading requests into
the next batch meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from keel.serve.model import LoadedModel, build_input


@dataclass(slots=True)
class _Item:
    model: LoadedModel
    table: list[list[Any]]
    done: asyncio.Future[list[Any]]
    deadline: float


def run_model(model: LoadedModel, table: list[list[Any]]) -> list[Any]:
    """Build the model's input from checked rows and predict: what a model thread runs."""
    out = model.predict(build_input(table, model.signature))
    if len(out) != len(table):
        raise ValueError(f"the model returned {len(out)} predictions for {len(table)} rows")
    return out


class MicroBatcher:
    def __init__(self, max_rows: int, max_latency: float, on_batch: Callable[[int], None] | None = None):
        self.max_rows = max_rows
        self.max_latency = max_latency
        self._on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._rows = 0
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="keel-serve-model")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def predict(self, model: LoadedModel, table: list[list[Any]]) -> asyncio.Future[list[Any]]:
        """The predictions for ``table`` (checked rows), once its batch has run."""
        loop = self._loop
        assert loop is not None, "MicroBatcher.start() runs in the app's lifespan"
        done: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append(_Item(model, table, done, time.perf_counter() + self.max_latency))
        self._rows += len(table)
        self._kick()
        return done

    def _kick(self) -> None:
        if self._busy or not self._pending:
            return
        assert self._loop is not None
        first = self._pending[0]
        left = first.deadline - time.perf_counter()
        if self._rows >= self.max_rows or left <= 0 or self._pending[-1].model is not first.model:
            self._launch()
        elif self._timer is None:
            self._timer = self._loop.call_later(left, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None   # (uvloop rounds a timer to whole ms: a batch may close up to 0.5 ms early, never late)
        if not self._busy and self._pending:
            self._launch()

    def _launch(self) -> None:
        assert self._loop is not None and self._executor is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, model = self._pending, self._pending[0].model
        batch: list[_Item] = []
        rows = 0
        while pending and (not batch or (pending[0].model is model
                                         and rows + len(pending[0].table) <= self.max_rows)):
            item = pending.popleft()
            batch.append(item)
            rows += len(item.table)
        self._rows -= rows
        self._busy = True
        if self._on_batch is not None:
            self._on_batch(rows)
        table = batch[0].table if len(batch) == 1 else [row for item in batch for row in item.table]
        loop = self._loop
        call = self._executor.submit(run_model, model, table)
        call.add_done_callback(lambda f: loop.call_soon_threadsafe(self._finish, batch, f))

    def _finish(self, batch: list[_Item], call: Future[list[Any]]) -> None:
        self._busy = False
        error = call.exception()
        if error is not None:
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(error)
        else:
            out, start = call.result(), 0
            for item in batch:
                end = start + len(item.table)
                if not item.done.done():
                    item.done.set_result(out if len(batch) == 1 else out[start:end])
                start = end
        self._kick()
