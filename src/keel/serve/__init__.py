"""Data Endpoints: serve a run's model (and Data Engine tables) over REST.

``serve(ServeOptions(flow="Train", artifact="model"))`` is what ``keel serve Train --artifact
model`` calls. FastAPI and uvicorn (the ``serve`` extra) are imported only when serving starts.

    options.py   ServeOptions, one endpoint's settings
    model.py     load_model (through keel.client), Signature, rows -> model input, BadInput
    follow.py    ModelSlot: follow the latest successful run, swap atomically
    app.py       the routes: /predict, /invocations (MLflow), /v2 (Open Inference), health, metrics
    batching.py  MicroBatcher (opt-in)
    metrics.py   Prometheus text
    tables.py    /tables routes, the seam to keel.data
    server.py    serve(): safety checks, uvicorn, workers
"""

from keel.serve.options import ServeOptions

__all__ = ["ServeOptions", "serve"]


def serve(options: ServeOptions) -> None:
    from keel.serve.server import serve as _serve

    _serve(options)
