"""Shared CLI plumbing: the error handler, window options, output helpers."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from courier.context import Context
from courier.display import cuts_cells
from courier.display import table as plain_table
from courier.errors import ConfigErrors, CourierError
from courier.validate import load_project

F = TypeVar("F", bound=Callable[..., Any])


class State:
    def __init__(self, project: str | None, debug: bool, wide: bool = False):
        self.project_dir = project
        self.debug = debug
        self.wide = wide
        self.quiet = False  # no progress lines (--json)
        self._context: Context | None = None

    def context(self, strict: bool = True) -> Context:
        if self._context is None:
            from courier.console import TerminalConsole

            project = load_project(self.project_dir, strict=strict)
            self._context = Context(project, TerminalConsole(quiet=self.quiet))
        return self._context


def error_handler(fn: F) -> F:
    """One place turns courier errors into a short red line and exit 1; --debug re-raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        state: State | None = ctx.find_object(State)
        try:
            return fn(*args, **kwargs)
        except (CourierError, ValueError) as exc:
            if state is not None and state.debug:
                raise
            if isinstance(exc, ConfigErrors):
                click.secho(f"Error: {len(exc.errors)} config problem(s):", fg="red", err=True)
                for e in exc.errors:
                    click.echo(f"  - {e}", err=True)
            else:
                click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def window_options(fn: F) -> F:
    fn = click.option("--date", "date", help="one partition day, e.g. 2026-11-22")(fn)
    fn = click.option("--hour", "hour", help="one hour, e.g. 2026-11-22T07")(fn)
    fn = click.option("--start", "start", help="window start (with --end)")(fn)
    fn = click.option("--end", "end", help="window end, exclusive")(fn)
    return fn


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="machine-readable output")(fn)


def now_utc() -> datetime:
    return datetime.now(UTC)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str))


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """An aligned table for stdout: cells cut at 40 characters only on a terminal without
    `courier --wide`; piped output keeps every character."""
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(State) if ctx is not None else None
    return plain_table(rows, columns, cut=cuts_cells(wide=bool(state and state.wide)))
