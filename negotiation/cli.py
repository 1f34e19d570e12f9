"""The ``negotiation`` command line."""

from __future__ import annotations

import typer

from negotiation.settings import settings_or_exit

app = typer.Typer(help="Negotiation service: serve the API, report on sessions, export rounds.")


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default NEGOTIATION_HOST)"),
    port: int | None = typer.Option(None, help="Port (default NEGOTIATION_PORT)"),
    workers: int = typer.Option(1, min=1, help="Worker processes"),
) -> None:
    """Serve the HTTP API with uvicorn (run ``alembic upgrade head`` first).

    Invalid settings (e.g. ``NEGOTIATION_ENV=production`` without keys of your own) stop it
    before it listens, with a message naming what to fix.
    """
    import uvicorn

    settings = settings_or_exit()
    uvicorn.run(
        "negotiation.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


@app.callback()
def _root() -> None:
    """Keep sub-commands explicit (``negotiation serve``) even while there is only one."""


def main() -> None:
    """Entry point of the ``negotiation`` console script."""
    app()
