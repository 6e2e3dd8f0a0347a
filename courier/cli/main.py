"""`courier` command line: thin commands over Context. Exit 0 ok, 1 failed, 2 usage."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from datetime import UTC, datetime
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
from courier.context import Context, run_record
from courier.errors import ConfigError, DatabaseLockedError
from courier.validate import load_project


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--project", "project", metavar="DIR", help="project folder (default: search up)")
@click.option("--debug", is_flag=True, help="show tracebacks and debug logs")
@click.option(
    "--wide", is_flag=True, help="never cut table cells (they are cut only on a terminal)"
)
@click.version_option(package_name="courier", prog_name="courier", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, project: str | None, debug: bool, wide: bool) -> None:
    """courier: land streamed events, courier them into typed feed tables."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = State(project, debug, wide)


@cli.command()
@click.option(
    "--for",
    "front_end",
    type=click.Choice(["serve", "scheduler", "run"]),
    help="also list the environment variables this front end needs, and check they are set",
)
@json_option
@click.pass_obj
@error_handler
def validate(state: State, front_end: str | None, as_json: bool) -> None:
    """Check every config, query (parsed, and bound against each file tag's pinned schema)
    and feed; exit 1 listing all problems, each once."""
    from courier.preflight import check_queries, environment, environment_errors

    project = load_project(state.project_dir, strict=False)
    problems: list[Any] = list(project.errors)
    if project.queries:
        problems += check_queries(project)
    needs = environment(project, front_end) if front_end else []  # type: ignore[arg-type]
    problems += environment_errors(needs, front_end or "")
    errors = list(dict.fromkeys(str(e) for e in problems))  # each problem once
    if as_json:
        out: dict[str, Any] = {"ok": not errors, "errors": errors}
        if front_end:
            out["environment"] = [
                {"variable": n.variable, "file": str(n.file), "key": n.key, "set": n.is_set,
                 "optional": n.optional}
                for n in needs
            ]  # fmt: skip
        emit_json(out)
        if errors:
            sys.exit(1)
        return
    if front_end:
        click.echo(f"environment for `courier {front_end}`:")
        # one line per variable and key of a folder: "[auth.secret] in config/streams/: a, b"
        places: dict[tuple[str, str, str, str], list[str]] = {}
        for n in needs:
            mark = "set" if n.is_set else ("unset (optional)" if n.optional else "NOT SET")
            rel = n.file.relative_to(project.root)
            places.setdefault((n.variable, mark, n.key, f"{rel.parent}/"), []).append(rel.stem)
        for (variable, mark, key, folder), stems in places.items():
            where = (
                f"{folder}{stems[0]}.toml [{key}]" if len(stems) == 1
                else f"[{key}] in {folder}: {', '.join(stems)}"
            )  # fmt: skip
            click.echo(f"  {variable:28} {mark:18} {where}")
        if not needs:
            click.echo("  (no environment variables)")
    if errors:
        click.secho(f"Error: {len(errors)} config problem(s):", fg="red", err=True)
        for e in errors:
            click.echo(f"  - {e}", err=True)
        sys.exit(1)
    click.echo(
        f"ok: {len(project.couriers)} courier(s), {len(project.feeds)} feed(s), "
        f"{len(project.queries)} query(ies), {len(project.streams)} stream(s), "
        f"{len(project.groups)} group(s)"
    )


def resolve_window(context: Context, courier_name: str, **window: Any) -> Any:
    courier = context.project.courier(courier_name)
    return context.window(courier, now=now_utc(), **window)


@cli.command()
@click.argument("courier")
@window_options
@json_option
@click.pass_obj
@error_handler
def files(state: State, courier: str, as_json: bool, **window: Any) -> None:
    """List the files a run would load, with sizes."""
    context = state.context()
    w = resolve_window(context, courier, **window)
    plan = context.plan(courier, w, now_utc())
    rows = [
        {
            "key": f.key,
            "size": f.info.size,
            "partition": f.partition.strftime("%Y-%m-%dT%H:%MZ"),
            "loaded": f.already_loaded,
            "lookback": f.lookback,
        }
        for f in plan.files
    ]
    if as_json:
        emit_json({"courier": courier, "window": w.as_dict(), "files": rows})
        return
    click.echo(f"{courier}: window [{w.as_dict()['start']}, {w.as_dict()['end']})")
    if rows:
        click.echo(table(rows, ["key", "size", "partition", "loaded"]))
    new = [f for f in plan.files if not f.already_loaded]
    size = sum(f.info.size for f in new)
    click.echo(f"{len(rows)} file(s), {len(new)} not loaded yet ({size} bytes)")


@cli.command()
@click.argument("courier")
@window_options
@click.option("--reload", is_flag=True, help="load files again even if already loaded")
@click.option("--dry-run", is_flag=True, help="show what would be loaded; change nothing")
@click.option("--force", is_flag=True, help="run a window that starts in the future")
@json_option
@click.pass_obj
@error_handler
def run(
    state: State,
    courier: str,
    reload: bool,
    dry_run: bool,
    force: bool,
    as_json: bool,
    **window: Any,
) -> None:
    """Run a courier over a window (default: the latest complete partition). On a terminal
    it shows its progress (phase, files, bytes) on stderr; piped or with --json, nothing extra."""
    if as_json:
        state.quiet = True
    context = state.context()
    w = resolve_window(context, courier, **window)
    now = now_utc()
    try:
        result = context.run(courier, w, now, reload=reload, dry_run=dry_run, force=force)
    except DatabaseLockedError as exc:
        if not as_json:
            raise
        # not recorded: the run history is in the database that could not be opened
        result = context.failed_result(context.project.courier(courier), w, now, exc)
    getattr(context.console, "done", lambda: None)()
    if as_json:
        emit_json(result)
    else:
        print_run(result)
    if result["status"] == "failed":
        sys.exit(1)


def print_run(result: dict[str, Any]) -> None:
    w = result["window"]
    status = result["status"]
    color = {"succeeded": "green", "failed": "red", "skipped": "yellow"}.get(status)
    click.secho(f"{result['courier']} [{w['start']}, {w['end']}): {status}", fg=color)
    f = result["files"]
    if status == "dry_run":  # nothing was read: say what the files are, not what loaded
        before = sum(1 for x in f.get("list", []) if x["loaded"])
        click.echo(f"  files: {f['found']} found, {before} loaded before")
    else:
        click.echo(
            f"  files: {f['found']} found, {f['loaded']} loaded, {f['skipped']} already "
            f"loaded; {result['bytes']} bytes, {result.get('records', 0)} records"
        )
    for feed, counts in result["feeds"].items():
        click.echo(
            f"  {feed}: {counts['read']} read, {counts['loaded']} loaded, "
            f"{counts['rejected']} rejected"
        )
    if result["quarantined"]:
        click.echo(f"  quarantined: {result['quarantined']} (see courier.quarantine)")
    for change in result.get("schema_changes") or []:
        click.echo(f"  schema: {change}")
    for warning in result.get("warnings") or []:
        click.echo(f"  note: {warning}")
    listed_files = f.get("list", [])
    if status == "dry_run":
        load = [x for x in listed_files if x.get("would_load")]
        again = sum(1 for x in load if x["loaded"])
        click.echo(
            f"  would load {len(load)} file(s), {sum(x['size'] for x in load)} bytes"
            + (f" ({again} loaded before, again because of --reload)" if again else "")
            + "; nothing was changed"
        )
    for listed in listed_files:
        if status == "dry_run":
            if listed.get("would_load"):
                mark = "would load again" if listed["loaded"] else "would load"
            else:
                mark = "already loaded, skipped"
        else:
            mark = "loaded" if listed["loaded"] else "new"
        click.echo(f"  {listed['key']}  {listed['size']}  {mark}")
    if result.get("error"):
        click.secho(f"  error: {result['error']}", fg="red")


@cli.group(invoke_without_command=True)
@click.option("--courier", "courier", help="only this courier's runs")
@click.option("--group", "group", help="only the runs of this group's group runs")
@click.option(
    "--status",
    type=click.Choice(["running", "succeeded", "failed", "skipped"]),
    help="only runs with this status",
)
@click.option("--limit", default=20, show_default=True)
@json_option
@click.pass_context
@error_handler
def runs(
    ctx: click.Context,
    courier: str | None,
    group: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Run history, newest first; each run names the group run it belongs to, if any
    (`courier group runs` lists group runs with their courier runs). `courier runs show
    RUN_ID` shows one run whole."""
    if ctx.invoked_subcommand is not None:
        return
    state: State = ctx.obj
    records = state.context().runs(courier, limit, group, status)
    if as_json:
        emit_json(records)
        return
    rows = [
        {
            "run_id": r["run_id"],
            "courier": r["courier"],
            "status": r["status"],
            "group": r["group"] or f"({r['trigger'] or 'manual'})",
            "window": f"{r['window']['start']}..{r['window']['end']}",
            "files": r["files"]["loaded"],
            "loaded": sum(f["loaded"] for f in r["feeds"].values()),
            "rejected": sum(f["rejected"] for f in r["feeds"].values()),
            "error": r["error"],
        }
        for r in records
    ]
    if not rows:
        click.echo(
            ("no runs yet" if status is None else f"no {status} runs")
            + (f" of courier {courier}" if courier else "")
        )
        return
    click.echo(table(rows, list(rows[0])))


@runs.command("show")
@click.argument("run_id")
@json_option
@click.pass_obj
@error_handler
def runs_show(state: State, run_id: str, as_json: bool) -> None:
    """One run: window, status, files loaded, per-feed counts, quarantine, the whole error."""
    detail = state.context().run_detail(run_id)
    if as_json:
        emit_json(detail)
        return
    w, f = detail["window"], detail["files"]
    click.echo(f"run {detail['run_id']}: courier {detail['courier']}, {detail['status']}")
    click.echo(f"  window:   [{w['start']}, {w['end']})")
    group = detail["group"] or "-"
    click.echo(f"  trigger:  {detail['trigger'] or 'manual'} (group {group})")
    click.echo(f"  started:  {detail['started_at']}, {detail['duration_s'] or 0:.1f} s")
    click.echo(
        f"  files:    {f['found']} found, {f['loaded']} loaded, {f['skipped']} already loaded; "
        f"{detail['bytes']} bytes, {detail['records']} records"
    )
    if detail["feeds"]:
        feed_rows = [{"feed": name, **counts} for name, counts in detail["feeds"].items()]
        columns = [
            c for c in ("feed", "read", "loaded", "rejected", "deleted") if c in feed_rows[0]
        ]
        click.echo("  " + table(feed_rows, columns).replace("\n", "\n  "))
    if detail["quarantined"]:
        click.echo(
            f"  quarantined: {detail['quarantined']} "
            f"(`courier quarantine --run {detail['run_id']}` shows them)"
        )
    for change in detail["schema_changes"]:
        click.echo(f"  schema: {change}")
    for warning in detail["warnings"]:
        click.echo(f"  note: {warning}")
    if f["list"]:
        click.echo("  loaded files:")
        click.echo(
            "  " + table(f["list"], ["key", "size", "tag", "partition"]).replace("\n", "\n  ")
        )
    if detail["error"]:
        click.secho("  error:", fg="red")
        for line in str(detail["error"]).splitlines():
            click.echo(f"    {line}")


@cli.command()
@click.option("--courier", "courier", help="only this courier's records")
@click.option("--run", "run_id", metavar="RUN_ID", help="only this run's records")
@click.option("--limit", default=50, show_default=True)
@json_option
@click.pass_obj
@error_handler
def quarantine(
    state: State, courier: str | None, run_id: str | None, limit: int, as_json: bool
) -> None:
    """Records set aside by runs (courier.quarantine): file, line, reason, raw record."""
    rows = state.context().quarantined(courier, run_id, limit)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no quarantined records" + (f" for run {run_id}" if run_id else ""))
        return
    click.echo(table(rows, ["run_id", "feed", "file", "line", "reason", "raw"]))
    if len(rows) == limit:
        click.echo(f"(first {limit}; --limit N shows more)")


@cli.group()
def feeds() -> None:
    """Feed definitions and their tables."""


@feeds.command("list")
@json_option
@click.pass_obj
@error_handler
def feeds_list(state: State, as_json: bool) -> None:
    context = state.context()
    with context.workspace() as ws:
        rows = [
            {
                "feed": f.id,
                "fields": len(f.fields),
                "primary_key": ",".join(f.primary_key),
                "rows": ws.destination_for(f).row_count(f.id),
            }
            for f in context.project.feeds.values()
        ]
    if as_json:
        emit_json(rows)
    else:
        click.echo(table(rows, ["feed", "fields", "primary_key", "rows"]))


@feeds.command("show")
@click.argument("feed")
@click.option("--sample", default=0, help="also show K rows")
@json_option
@click.pass_obj
@error_handler
def feeds_show(state: State, feed: str, sample: int, as_json: bool) -> None:
    context = state.context()
    definition = context.project.feed(feed)
    with context.workspace() as ws:
        destination = ws.destination_for(definition)
        count = destination.row_count(feed)
        rows = destination.sample(feed, sample) if sample and count else []
        url = destination.url(feed) if hasattr(destination, "url") else None
    out = {**definition.model_dump(), "rows": count or 0}
    if url:
        out["table_url"] = url
    if sample:
        out["sample"] = rows
    if as_json:
        emit_json(out)
        return
    pk = ", ".join(definition.primary_key) or "-"
    click.echo(f"feed {feed}: {count or 0} row(s); primary key {pk}")
    if url:
        click.echo(f"Delta table: {url}")
    for name, typ in definition.fields.items():
        flags = []
        if name in definition.primary_key:
            flags.append("pk")
        if name in definition.required:
            flags.append("required")
        click.echo(f"  {name:24} {typ:16} {' '.join(flags)}")
    if rows:
        click.echo(table(rows, list(rows[0])))


def delta_table(context: Any, ws: Any, feed: str) -> Any:
    """The feed's Delta table, or a ConfigError saying where the feed is instead."""
    definition = context.project.feed(feed)
    destination = ws.destination_for(definition)
    if getattr(destination, "type", "") != "delta":
        raise ConfigError(
            f"feed {feed} is in the {getattr(destination, 'type', '')} destination; history and "
            f'optimize are for Delta feeds: set destination = "NAME" in feeds/{feed}.toml '
            'to a [destinations.NAME] with type = "delta"'
        )
    return destination.table(definition)


@feeds.command("history")
@click.argument("feed")
@click.option("--limit", default=20, show_default=True, help="newest commits to show")
@json_option
@click.pass_obj
@error_handler
def feeds_history(state: State, feed: str, limit: int, as_json: bool) -> None:
    """A Delta feed's commits, newest first, with the courier runs that made them."""
    context = state.context()
    with context.workspace() as ws:
        table_ = delta_table(context, ws, feed)
        commits = table_.history(limit)
    if as_json:
        emit_json({"feed": feed, "table_url": table_.url, "commits": commits})
        return
    click.echo(f"Delta table: {table_.url}")
    shown = [
        {
            "version": c["version"],
            "at": datetime.fromtimestamp(c["timestamp"] / 1000, UTC).isoformat(timespec="seconds"),
            "operation": c["operation"],
            "load": c["load"] or "",
            "courier": c["courier"] or "",
            "run_id": c["run_id"] or "",
        }
        for c in commits
    ]
    click.echo(table(shown, ["version", "at", "operation", "load", "courier", "run_id"]))


@feeds.command("optimize")
@click.argument("feed")
@click.option("--vacuum-hours", type=int, default=None, help="also delete files older versions "
              "no younger than N hours need (readers of older versions then fail)")  # fmt: skip
@json_option
@click.pass_obj
@error_handler
def feeds_optimize(state: State, feed: str, vacuum_hours: int | None, as_json: bool) -> None:
    """Compact a Delta feed's small files (one per load) and checkpoint its log."""
    context = state.context()
    with context.workspace() as ws:
        table_ = delta_table(context, ws, feed)
        result = table_.optimize(vacuum_hours)
    metrics = result["compacted"]
    out = {
        "feed": feed,
        "table_url": table_.url,
        "files_added": metrics.get("numFilesAdded", 0),
        "files_removed": metrics.get("numFilesRemoved", 0),
        "vacuumed_files": result["vacuumed_files"],
    }
    if as_json:
        emit_json(out)
        return
    click.echo(
        f"{feed}: compacted {out['files_removed']} file(s) into {out['files_added']}, "
        f"vacuumed {out['vacuumed_files']} file(s) ({table_.url})"
    )


PLUGINS = [
    "courier.cli.ingest",
    "courier.cli.scheduling",
    "courier.cli.analyst",
    "courier.cli.apikeys",
    "courier.cli.sources",
    "courier.cli.ui",
]


def load_plugins() -> None:
    for name in PLUGINS:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(cli)


def main() -> None:
    load_plugins()
    cli(prog_name="courier")


__all__ = ["cli", "main", "run_record"]
