"""Analyst commands (SPEC 6): `courier query preview|test|draft|import`, `courier feeds infer`."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import click

from courier.cli.options import (
    State,
    emit_json,
    error_handler,
    json_option,
    now_utc,
    table,
    window_options,
)
from courier.context import Context
from courier.windows import Window


def analyst_context(state: State) -> Context:
    """The project as the analyst commands need it: feed files they are about to draft may be
    missing; every other config problem stops the command."""
    from courier.analyst.preview import usable_project
    from courier.console import TerminalConsole

    return Context(usable_project(state.project_dir), TerminalConsole())


def chosen_window(
    context: Context, courier_name: str, sample: str | None, **window: Any
) -> Window | None:
    """The window given, else (without --file) the courier's latest complete partition."""
    if sample and not any(window.values()):
        return None
    courier = context.project.courier(courier_name)
    return context.window(courier, now=now_utc(), **window)


@click.group("query")
def query() -> None:
    """Preview, test, draft and import flattening queries."""


@query.command("preview")
@click.argument("name")
@click.argument("courier", required=False)
@window_options
@click.option("--limit", default=20, show_default=True, help="rows to show (0: all)")
@click.option("--file", "sample", metavar="PATH", help="read a local sample file instead")
@click.option("--full", is_flag=True, help="read every file of the window, not a sample")
@click.option("--schema", "with_schema", is_flag=True, help="print the inferred input schema")
@click.option("--csv", "as_csv", is_flag=True, help="CSV output")
@json_option
@click.pass_obj
@error_handler
def query_preview(
    state: State,
    name: str,
    courier: str | None,
    limit: int,
    sample: str | None,
    full: bool,
    with_schema: bool,
    as_csv: bool,
    as_json: bool,
    **window: Any,
) -> None:
    """Run saved query NAME over COURIER's files for a window (or --file PATH) and show rows.

    NAME may be a .sql file (a draft), or a courier: then its input is shown as it is."""
    from courier.analyst.preview import preview, resolve
    from courier.display import display

    context = analyst_context(state)
    _, courier_cfg = resolve(context.project, name, courier)
    w = chosen_window(context, courier_cfg.name, sample, **window)
    result = preview(
        context, name, courier_cfg.name, w, Path(sample) if sample else None, limit, full,
        with_schema,
    )  # fmt: skip
    if as_json:
        emit_json(result.as_dict(with_schema))
        return
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if with_schema:
            writer.writerow(["tag", "path", "type", "filled"])
            for line in result.schema_rows():
                writer.writerow([line["tag"], line["path"], line["type"], line["filled"]])
        else:
            writer.writerow(list(result.columns))
            writer.writerows([display(v) for v in row] for row in result.rows)
        click.echo(out.getvalue(), nl=False)
        return
    for report in result.inputs:
        click.echo(report.describe(), err=True)
    if with_schema:
        print_schema(result.schema_rows())
        return
    rows = [
        dict(zip(result.columns, (display(v) for v in row), strict=True)) for row in result.rows
    ]
    click.echo(table(rows, list(result.columns)))
    shown = len(result.rows)
    click.echo(f"{shown} of {result.total_rows} row(s)", err=True)


def print_schema(lines: list[dict[str, Any]]) -> None:
    tag = None
    for line in lines:
        if line["tag"] != tag:
            tag = line["tag"]
            click.echo(tag)
        indent = "  " * (line["depth"] + 1)
        filled = "" if line["filled"] is None else f"{line['filled']:6.1%}"
        click.echo(
            f"{indent}{line['name']:<{max(32 - len(indent), 1)}} {line['type']:<28} {filled}"
        )


@query.command("test")
@click.argument("name", required=False)
@click.pass_obj
@error_handler
def query_test(state: State, name: str | None) -> None:
    """Run queries/tests/*.toml (or the ones for NAME); exit 1 on a failure."""
    from courier.analyst.querytest import run_tests

    context = analyst_context(state)
    outcomes = run_tests(context.project, name)
    root = context.project.root
    failed = 0
    for outcome in outcomes:
        where = _rel(outcome.path, root)
        if outcome.passed:
            also = f"; same rows on {', '.join(outcome.engines)}" if outcome.engines else ""
            click.echo(f"ok    {where} ({outcome.rows} row(s){also})")
            continue
        failed += 1
        query_text = ""
        if outcome.test is not None:
            query_text = f": query {outcome.test.query}"
            if outcome.query_path is not None:
                query_text += f" ({_rel(outcome.query_path, root)})"
        click.secho(f"FAIL  {where}{query_text}", fg="red")
        if outcome.error:
            click.echo(f"      {outcome.error}")
        for problem in outcome.problems:
            click.echo(f"      {problem}")
    passed = len(outcomes) - failed
    click.echo(f"{passed} passed, {failed} failed")
    if failed:
        sys.exit(1)


def command_line(command: str, courier: str, sample: str | None, window: dict[str, Any]) -> str:
    parts = [command, courier]
    parts += [f"--{k} {v}" for k, v in window.items() if v]
    if sample:
        parts.append(f"--file {sample}")
    return " ".join(parts)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


@query.command("draft")
@click.argument("courier")
@window_options
@click.option("--file", "sample", metavar="PATH", help="read a local sample file instead")
@click.option("--explode", "explode", metavar="PATH", help="the list to unnest into rows")
@click.option("--out", "out", metavar="FILE", help="where to write (default queries/COURIER.sql)")
@click.option("--full", is_flag=True, help="read every file of the window, not a sample")
@click.option("--force", is_flag=True, help="overwrite an existing file")
@click.pass_obj
@error_handler
def query_draft(
    state: State,
    courier: str,
    sample: str | None,
    explode: str | None,
    out: str | None,
    full: bool,
    force: bool,
    **window: Any,
) -> None:
    """Write a starting flattening query from COURIER's nested input schema."""
    from courier.analyst.draft import draft_query, write_draft

    context = analyst_context(state)
    w = chosen_window(context, courier, sample, **window)
    command = command_line("courier query draft", courier, sample, window)
    if explode:
        command += f" --explode {explode}"
    result = draft_query(
        context, courier, w, Path(sample) if sample else None, explode, full, command
    )
    target = Path(out) if out else context.project.root / "queries" / f"{courier}.sql"
    if out == "-":
        click.echo(result.sql, nl=False)
        return
    write_draft(target, result.sql, force)
    click.echo(f"wrote {_rel(target, context.project.root)}: {result.summary()}")
    for note in result.notes:
        click.echo(f"  note: {note}")
    click.echo(
        f"next: courier query preview {_rel(target, context.project.root)} {courier}"
        + (f" --file {sample}" if sample else "")
    )


@query.command("import")
@click.argument("file")
@click.option("--from", "dialect", type=click.Choice(["spark"]), required=True)
@click.option(
    "--out", "out", metavar="FILE", help="where to write (default queries/NAME.sql; - prints)"
)
@click.option("--force", is_flag=True, help="overwrite an existing file")
@click.pass_obj
@error_handler
def query_import(state: State, file: str, dialect: str, out: str | None, force: bool) -> None:
    """Translate a Spark SQL query FILE into a DuckDB saved query."""
    from courier.analyst.draft import write_draft
    from courier.analyst.spark_import import default_target, import_spark

    source = Path(file)
    result = import_spark(source)
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if out == "-":
        click.echo(result.sql, nl=False)
        return
    root = analyst_context(state).project.root
    target = Path(out) if out else default_target(source, root)
    write_draft(target, result.sql, force)
    click.echo(f"wrote {_rel(target, root)}: translated from Spark SQL ({result.summary()})")


@click.command("infer")
@click.argument("courier")
@window_options
@click.option("--file", "sample", metavar="PATH", help="read a local sample file instead")
@click.option("--feed", "feed", help="only this feed of the courier's load operations")
@click.option("--full", is_flag=True, help="read every file of the window, not a sample")
@click.option("--force", is_flag=True, help="overwrite existing feed files")
@click.option(
    "--out", "out", type=click.Choice(["-"]), help="- prints the drafts instead of writing them"
)
@json_option
@click.pass_obj
@error_handler
def feeds_infer(
    state: State,
    courier: str,
    sample: str | None,
    feed: str | None,
    full: bool,
    force: bool,
    out: str | None,
    as_json: bool,
    **window: Any,
) -> None:
    """Draft feeds/FEED.toml for COURIER's load operations from the (flattened) data."""
    from courier.analyst.infer import infer_feeds, write_feeds

    context = analyst_context(state)
    w = chosen_window(context, courier, sample, **window)
    drafts = infer_feeds(context, courier, w, Path(sample) if sample else None, feed, full)
    command = command_line("courier feeds infer", courier, sample, window)
    if out == "-":
        for i, d in enumerate(drafts):
            header = f"# feeds/{d.path.name}\n" if len(drafts) > 1 else ""
            click.echo(("\n" if i else "") + header + d.toml(command), nl=False)
        return
    write_feeds(drafts, force, command)
    if as_json:
        emit_json([d.as_dict() for d in drafts])
        return
    for d in drafts:
        click.echo(f"wrote {_rel(d.path, context.project.root)}: {d.summary()}")
        for note in d.notes:
            click.echo(f"  note: {note}")
        for conflict in d.conflicts:
            click.secho(f"  conflicting types: {conflict}", fg="yellow")


def register(cli: click.Group) -> None:
    if "query" not in cli.commands:
        cli.add_command(query)
    feeds = cli.commands.get("feeds")
    if isinstance(feeds, click.Group):
        feeds.add_command(feeds_infer)
