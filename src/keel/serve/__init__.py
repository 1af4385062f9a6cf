"""Data Endpoints: serve a run's model (and Data Engine tables) over REST.

``serve(ServeOptions(flow="Train", artifact="model"))`` is what ``keel serve Train --artifact
model`` calls. FastAPI and uvicorn (the ``serve`` extra) are imported only when serving starts.

    options.py   ServeOptions, one endpoint's settings
    model.py     load_model (through keel.client), Signature, rows -> model input, BadInput
    follow.py    ModelSlot: follow the latest successful run, swap atomically
    app.py       the FastAPI app (/v2 metadata, health, metrics, tables, docs) behind _Guard (id, token,
                 body limit, metrics, and the prediction fast path)
    inference.py the prediction routes as (scope, body) -> JSON: /predict, /invocations, /v2/.../infer
    shapes.py    request bodies (Keel, MLflow JSON and CSV, Open Inference) -> rows
    batching.py  MicroBatcher (opt-in)
    metrics.py   Prometheus text; per-worker mmap tables summed across --workers
    docs.py      /docs: Swagger UI with its assets served locally
    tables.py    /tables routes, the seam to keel.data
    server.py    serve(): safety checks, uvicorn, workers
"""

from keel.serve.options import ServeOptions

__all__ = ["ServeOptions", "serve"]


def serve(options: ServeOptions) -> None:
    from keel.serve.server import serve as _serve

    _serve(options)
