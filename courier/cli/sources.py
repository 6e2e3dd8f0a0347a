"""CLI plugin for sources: `courier poll SOURCE [--once]`."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from courier.cli.options import State, emit_json, error_handler, json_option
from courier.validate import load_project


@click.command()
@click.argument("name", metavar="SOURCE")
@click.option("--once", is_flag=True, help="fetch until there is nothing more, then exit")
@json_option
@click.pass_obj
@error_handler
def poll(state: State, name: str, once: bool, as_json: bool) -> None:
    """Run a source of config/sources/: poll an HTTP API or pull files into its stream.

    Without --once, fetch every `interval` until SIGTERM/SIGINT.
    """
    from courier.sources.run import describe, get_source, run_forever, run_source

    project = load_project(state.project_dir)
    if once:
        summary = run_source(project, name)
        if as_json:
            emit_json(summary)
        else:
            click.echo(describe(summary))
        return
    get_source(project, name)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def report(summary: dict[str, Any] | None, error: Exception | None) -> None:
        if error is not None:
            click.echo(f"Error: {error}", err=True)
        elif as_json:
            emit_json(summary)
        elif summary is not None:
            click.echo(describe(summary))

    run_forever(project, name, stop, report)


def register(cli: click.Group) -> None:
    cli.add_command(poll)


__all__ = ["register"]
