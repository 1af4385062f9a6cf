"""MicroBatcher on a real event loop with small real models (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keel.serve.batching import MicroBatcher
from keel.serve.model import LoadedModel, Signature


def _model(calls: list[tuple[int, int]], run_id: int = 1) -> LoadedModel:
    def predict(x: Any) -> list[float]:
        calls.append((run_id, len(x)))
        return [float(v) + run_id * 1000 for v in x[:, 0]]
    return LoadedModel(flow="F", run_id=run_id, step="end", artifact="m", key="k", model=predict,
                       signature=Signature(width=1))


def _run(batcher: MicroBatcher, requests: list[tuple[LoadedModel, list[list[float]]]]) -> list[list[Any]]:
    async def main() -> list[list[Any]]:
        batcher.start()
        try:
            return list(await asyncio.gather(*(batcher.predict(m, rows) for m, rows in requests)))
        finally:
            await batcher.stop()
    return asyncio.run(main())


def test_a_full_batch_starts_at_once_and_each_request_gets_its_own_rows():
    calls: list[tuple[int, int]] = []
    model = _model(calls)
    requests = [(model, [[float(i)], [float(i) + 0.5]]) for i in range(6)]
    out = _run(MicroBatcher(max_rows=4, max_latency=60.0), requests)   # never waits for the deadline
    assert out == [[1000.0 + i, 1000.5 + i] for i in range(6)]
    assert calls == [(1, 4), (1, 4), (1, 4)]


def test_a_batch_that_is_not_full_closes_at_its_deadline():
    calls: list[tuple[int, int]] = []
    model = _model(calls)
    out = _run(MicroBatcher(max_rows=100, max_latency=0.01), [(model, [[1.0]]), (model, [[2.0]])])
    assert out == [[1001.0], [1002.0]] and calls == [(1, 2)]


def test_requests_for_different_models_never_share_a_call():
    calls: list[tuple[int, int]] = []
    old, new = _model(calls, 1), _model(calls, 2)
    out = _run(MicroBatcher(max_rows=100, max_latency=0.01),
               [(old, [[1.0]]), (old, [[2.0]]), (new, [[3.0]]), (new, [[4.0]])])
    assert out == [[1001.0], [1002.0], [2003.0], [2004.0]]
    assert calls == [(1, 2), (2, 2)]


def test_a_model_error_reaches_every_request_of_its_batch():
    bad = LoadedModel(flow="F", run_id=1, step="end", artifact="m", key="k", model=lambda x: [0],
                      signature=Signature(width=1))
    with pytest.raises(ValueError, match="returned 1 predictions for 2 rows"):
        _run(MicroBatcher(max_rows=2, max_latency=60.0), [(bad, [[1.0]]), (bad, [[2.0]])])
