"""``keel ui``: start the dashboard over the store of KEEL_HOME."""

from __future__ import annotations

import os

import click

from keel.cli.types import PORT
from keel.settings import Settings


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (loopback unless --token)")
@click.option("--port", default=8765, show_default=True, type=PORT)
@click.option("--token", default=None, help="a secret every request must carry; required off loopback")
@click.option("-f", "--file", "project_file", default=None, type=click.Path(),
              help="a keel.yaml whose schedules to show (default: ./keel.yaml when present)")
def ui(host: str, port: int, token: str | None, project_file: str | None) -> None:
    """A web dashboard of every run: filter, compare, live logs and metrics."""
    from keel.cli.main import _guard
    from keel.errors import UsageError

    def go() -> int:
        try:
            import starlette  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            raise UsageError("keel ui needs the dashboard's packages: pip install 'keel[ui]'") from None
        from keel.ui.app import serve

        path = project_file or ("keel.yaml" if os.path.exists("keel.yaml") else None)
        serve(host=host, port=port, token=token or Settings.from_env().ui_token, project_file=path)
        return 0

    _guard(go)
