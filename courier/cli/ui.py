"""CLI plugin: `courier ui`, the read-only status page."""

from __future__ import annotations

import click

from courier.cli.options import State, error_handler


def register(cli: click.Group) -> None:
    cli.add_command(ui)


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; off loopback it needs [ui] token")  # fmt: skip
@click.option("--port", default=8070, show_default=True, type=int)
@click.pass_obj
@error_handler
def ui(state: State, host: str, port: int) -> None:
    """Serve the status page: overview, runs, feeds, charts, /api/status.json, /metrics.

    Read-only; it reads the state in short visits and never makes a run wait: while a run
    holds the feed database it shows the last snapshot and says how old it is."""
    import uvicorn

    from courier.ui.app import create_app

    app = create_app(state.context(), host)
    click.echo(f"courier ui: http://{host}:{port}/", err=True)
    uvicorn.run(
        app, host=host, port=port, lifespan="on", loop="uvloop", http="httptools",
        log_level="debug" if state.debug else "warning", access_log=False, server_header=False,
    )  # fmt: skip
