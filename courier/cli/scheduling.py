"""CLI plugin: `courier group run|runs|list`, `courier scheduler`, `courier status`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from courier.cli.options import State, emit_json, error_handler, json_option, now_utc, table
from courier.scheduling.planning import get_group, group_zone, schedule_of
from courier.scheduling.runner import GroupRunner
from courier.scheduling.status import courier_status
from courier.windows import iso_utc, parse_time, ts


def register(cli: click.Group) -> None:
    cli.add_command(group)
    cli.add_command(scheduler)
    cli.add_command(status)


def verbose_logs(state: State) -> None:
    if not state.debug:
        logging.getLogger("courier").setLevel(logging.INFO)


@click.group("group")
def group() -> None:
    """Courier groups: run one as the scheduler would, list them, show their runs."""


@group.command("run")
@click.argument("name")
@click.option("--at", "at", metavar="TIME", help="scheduled time to run (default: now), in the "
              "group's time zone unless it has an offset, e.g. 2026-11-23T06:00")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="print each courier's window, partitions and files")
@click.option("--no-wait", is_flag=True, help="do not poll for missing files (ignore `wait`)")
@json_option
@click.pass_obj
@error_handler
def group_run(
    state: State, name: str, at: str | None, dry_run: bool, no_wait: bool, as_json: bool
) -> None:
    """Run group NAME exactly as the scheduler would at TIME."""
    context = state.context()
    config = get_group(context.project, name)
    when = parse_time(at, group_zone(context.project, config)) if at else now_utc()
    runner = GroupRunner(context, lock_timeout=600, wait=not no_wait)
    result = runner.run(name, when, trigger="manual", dry_run=dry_run)
    getattr(context.console, "done", lambda: None)()
    if as_json:
        emit_json(result)
    else:
        print_group_run(result)
    if result["status"] in ("failed", "partially_failed"):
        sys.exit(1)


def print_group_run(result: dict[str, Any]) -> None:
    status = result["status"]
    color = {"succeeded": "green", "failed": "red", "partially_failed": "red"}.get(status)
    click.secho(
        f"group {result['group']} at {result['scheduled_at']} ({result['time_zone']}): {status}",
        fg=color,
    )
    for run in result["couriers"]:
        w = run.get("window")
        span = f"[{w['start']}, {w['end']})" if w else "(empty window)"
        retry = " (retry of a failed window)" if run.get("retry") else ""
        click.echo(f"  {run['courier']} {span}{retry}: {run['status']}")
        if run.get("partitions") is not None:
            click.echo(f"    partitions: {', '.join(run['partitions']) or 'none'}")
        if run.get("note"):
            click.echo(f"    note: {run['note']}")
        if run.get("missing_partitions"):
            click.echo(f"    missing: {', '.join(run['missing_partitions'])}")
        files = run.get("files") or {}
        if "list" in files:
            click.echo(f"    files: {files['found']} found, {files['skipped']} already loaded")
            for f in files["list"]:
                mark = "loaded" if f["loaded"] else "new"
                click.echo(f"      {f['key']}  {f['size']}  {mark}")
        elif run.get("run_id"):
            loaded = sum(c["loaded"] for c in (run.get("feeds") or {}).values())
            click.echo(
                f"    run {run['run_id']}: {files.get('loaded', 0)} file(s), {loaded} row(s) "
                f"loaded, {run.get('duration_s') or 0:.1f}s"
            )
        if run.get("error"):
            click.secho(f"    error: {run['error']}", fg="red")
    for alert in result.get("alerts") or []:
        click.secho(f"  alert {alert['kind']}: {alert['message']}", fg="yellow")
    if result.get("error") and status not in ("failed", "partially_failed"):
        click.echo(f"  {result['error']}")


@group.command("runs")
@click.argument("name", required=False)
@click.option("--limit", default=10, show_default=True)
@json_option
@click.pass_obj
@error_handler
def group_runs(state: State, name: str | None, limit: int, as_json: bool) -> None:
    """Group runs, newest first, each with its courier runs."""
    from courier.context import run_record

    context = state.context()
    if name:
        get_group(context.project, name)
    with context.workspace() as ws:
        runs = ws.state.group_runs(name, limit)
        members = ws.state.runs_of_groups([r.group_run_id for r in runs])
        alerts = {r.group_run_id: ws.state.alerts(group_run_id=r.group_run_id) for r in runs}
    by_group: dict[str, list[dict[str, Any]]] = {}
    for m in members:
        by_group.setdefault(m.group_run_id or "", []).append(run_record(m))
    out: list[dict[str, Any]] = []
    for g in runs:
        out.append(
            {
                "group_run_id": g.group_run_id,
                "group": g.group,
                "scheduled_at": ts(g.scheduled_at),
                "trigger": g.trigger,
                "status": g.status,
                "started_at": ts(g.started_at),
                "finished_at": ts(g.finished_at),
                "duration_s": g.duration_s,
                "error": g.error,
                "members": g.members,
                "runs": by_group.get(g.group_run_id, []),
                "alerts": [
                    {"kind": a["kind"], "courier": a["courier"], "message": a["message"]}
                    for a in alerts[g.group_run_id]
                ],
            }
        )
    if as_json:
        emit_json(out)
        return
    if not out:
        click.echo("no group runs yet")
    for r in out:
        click.echo(
            f"{r['group']} at {r['scheduled_at']} [{r['trigger']}] {r['status']}  "
            f"({r['group_run_id']})"
        )
        rows = [
            {
                "run_id": run["run_id"],
                "courier": run["courier"],
                "status": run["status"],
                "window": f"{run['window']['start']}..{run['window']['end']}",
                "files": run["files"]["loaded"],
                "loaded": sum(f["loaded"] for f in run["feeds"].values()),
                "error": run["error"],
            }
            for run in r["runs"]
        ]
        if rows:
            click.echo("  " + table(rows, list(rows[0])).replace("\n", "\n  "))
        for alert in r["alerts"]:
            click.echo(f"  alert {alert['kind']}: {alert['message']}")


@group.command("list")
@json_option
@click.pass_obj
@error_handler
def group_list(state: State, as_json: bool) -> None:
    """Groups with their schedule, time zone, couriers and next run."""
    context = state.context()
    now = now_utc()
    rows = []
    for name, config in sorted(context.project.groups.items()):
        nxt = schedule_of(context.project, config).next_after(now)
        rows.append(
            {
                "group": name,
                "schedule": config.schedule,
                "time_zone": group_zone(context.project, config).key,
                "couriers": ",".join(m.name for m in config.couriers),
                "run_after": ",".join(config.run_after),
                "next_run": iso_utc(nxt) if nxt else None,
            }
        )
    if as_json:
        emit_json(rows)
    else:
        click.echo(table(rows, ["group", "schedule", "time_zone", "couriers", "run_after",
                                "next_run"]))  # fmt: skip


@click.command("scheduler")
@click.option("--since", metavar="TIME", help="on a first start, treat fire times after TIME "
              "as missed (catch_up decides which run)")  # fmt: skip
@click.option("--once", is_flag=True, help="run what is due now (catch-up included) and one "
              "round of each source, then exit")  # fmt: skip
@click.option("--no-sources", is_flag=True, help="run groups only, not config/sources/")
@click.option("--max-groups", default=2, show_default=True, help="groups running at once")
@click.option("--grace", default=60.0, show_default=True,
              help="seconds running courier runs get to finish after SIGTERM")  # fmt: skip
@click.option("--ui-port", type=int, help="also serve the status page and /metrics on this port")
@click.option("--ui-host", default="127.0.0.1", show_default=True,
              help="address of the status page; off loopback it needs [ui] token")  # fmt: skip
@click.pass_obj
@error_handler
def scheduler(
    state: State,
    since: str | None,
    once: bool,
    no_sources: bool,
    max_groups: int,
    grace: float,
    ui_port: int | None,
    ui_host: str,
) -> None:
    """Run every group on its schedule and every source on its interval, in the foreground,
    until SIGTERM or Ctrl-C."""
    context = state.context()
    from courier.scheduling.loop import Scheduler  # APScheduler: only this command needs it

    verbose_logs(state)
    start = parse_time(since, context.project.time_zone) if since else None
    if not context.project.groups:
        click.echo("no groups: add config/groups/NAME.toml", err=True)
    server: Any = None
    observers: list[Callable[[dict[str, Any]], None]] = []
    if ui_port is not None:
        from courier.metrics import SchedulerMetrics
        from courier.ui.app import BackgroundServer, create_app

        metrics = SchedulerMetrics()
        app = create_app(context, ui_host, in_scheduler=True)

        def overview(snap: Any, outcome: str, took: float) -> None:
            if snap:
                metrics.overview(snap.couriers, snap.alerts)

        app.reader.listeners.append(overview)
        observers.append(metrics.group_run)
        server = BackgroundServer(app, ui_host, ui_port)
        server.start()
        click.echo(f"courier scheduler: status page on http://{ui_host}:{ui_port}/", err=True)
    try:
        code = Scheduler(
            context, since=start, once=once, sources=not no_sources, max_groups=max_groups,
            grace=grace, observers=observers,
        ).run()  # fmt: skip
    finally:
        if server is not None:
            server.stop()
    sys.exit(code)


@click.command("status")
@json_option
@click.pass_obj
@error_handler
def status(state: State, as_json: bool) -> None:
    """Per courier: last success, newest loaded partition, backlog, next scheduled run."""
    context = state.context()
    rows = courier_status(context, now_utc())
    if as_json:
        emit_json(rows)
        return
    flat = [
        {
            "courier": r["courier"],
            "last_success": r["last_success"] or "never",
            "last_run": r["last_run"]["status"] if r["last_run"] else "-",
            "newest_partition": r["newest_partition"] or "-",
            "not_loaded": (
                f"{r['backlog']['files']} file(s), {r['backlog']['bytes']} B"
                if "error" not in r["backlog"]
                else "storage error"
            ),
            "next_run": f"{r['next_run']['at']} ({r['next_run']['group']})"
            if r["next_run"]
            else "not scheduled",
        }
        for r in rows
    ]
    click.echo(table(flat, list(flat[0]) if flat else ["courier"]))
    for r in rows:
        if "error" in r["backlog"]:
            click.secho(f"{r['courier']}: {r['backlog']['error']}", fg="red", err=True)
