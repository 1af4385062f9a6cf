"""``keel ui``: a web dashboard over the store (runs, a run's graph, logs, metrics, compare).

Needs the ``ui`` extra (``pip install keel[ui]``: Starlette and uvicorn), imported only when
the dashboard starts. :mod:`keel.ui.data` is the one module that reads the store.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    from keel.ui.app import create_app as _create

    return _create(*args, **kwargs)


def serve(*args: Any, **kwargs: Any) -> None:
    from keel.ui.app import serve as _serve

    _serve(*args, **kwargs)
