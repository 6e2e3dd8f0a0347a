"""`courier status`: per courier, the last success, the newest loaded partition, the files
landed but not loaded (within its lookback, default one day) and the next scheduled run."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from courier.context import Context
from courier.errors import CourierError
from courier.groups import duration, member_lookback, member_project, schedule_of
from courier.windows import Window, iso_utc, ts

DEFAULT_BACKLOG = timedelta(days=1)


def courier_status(context: Context, now: datetime) -> list[dict[str, Any]]:
    project = context.project
    memberships: dict[str, list[tuple[str, Any]]] = {}
    for group in project.groups.values():
        for member in group.couriers:
            memberships.setdefault(member.name, []).append((group.name, member))
    next_runs: dict[str, datetime | None] = {
        name: schedule_of(project, group).next_after(now) for name, group in project.groups.items()
    }
    rows = []
    with context.workspace() as ws:
        for name, courier in sorted(project.couriers.items()):
            members = memberships.get(name, [])
            ctx, lookback = context, None
            if members:
                group_name, member = members[0]
                group = project.groups[group_name]
                ctx = Context(member_project(project, group, member), context.console)
                lookback = member_lookback(project, member)
            else:
                lookback = duration(courier.lookback)
            lookback = lookback or DEFAULT_BACKLOG
            summary = ws.state.courier_summary(name)
            backlog: dict[str, Any] = {"since": iso_utc(now - lookback), "files": 0, "bytes": 0}
            try:
                files = ctx.discover(courier, Window(now - lookback, now))
                keys = [f.key for f in files]
                loaded = ws.state.loaded_versions(courier.name, courier.storage, keys)
                new = [
                    f for f in files if (f.info.size, f.info.version) not in loaded.get(f.key, ())
                ]
                backlog.update(files=len(new), bytes=sum(f.info.size for f in new))
                backlog["oldest"] = iso_utc(min(f.partition for f in new)) if new else None
            except CourierError as exc:
                backlog["error"] = str(exc)
            upcoming = sorted((at, g) for g, _ in members if (at := next_runs.get(g)) is not None)
            last_run = summary.get("last_run")
            rows.append(
                {
                    "courier": name,
                    "groups": [g for g, _ in members],
                    "last_success": ts(summary.get("last_success")),
                    "last_run": {
                        "run_id": last_run.run_id,
                        "status": last_run.status,
                        "started_at": ts(last_run.started_at),
                        "error": last_run.error,
                    }
                    if last_run
                    else None,
                    "newest_partition": ts(summary.get("newest_partition")),
                    "backlog": backlog,
                    "next_run": {"group": upcoming[0][1], "at": iso_utc(upcoming[0][0])}
                    if upcoming
                    else None,
                }
            )
    return rows
