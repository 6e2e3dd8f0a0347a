"""`courier status`: per courier, the last success, the newest loaded partition, the files
landed but not loaded (within its lookback, default one day) and the next scheduled run.

The pieces (`memberships`, `next_runs`, `member_view`, `backlog_of`) are shared with the
status page (courier/ui), which lists storage first and reads the state store briefly after."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from courier.config.models import duration
from courier.context import Context
from courier.errors import CourierError
from courier.plan import PlannedFile
from courier.project import Project
from courier.scheduling.planning import file_zone, member_lookback, schedule_of
from courier.windows import Window, iso_utc, ts

DEFAULT_BACKLOG = timedelta(days=1)

LoadedVersions = Callable[[str, str, list[str]], dict[str, set[tuple[int, str]]]]


def memberships(project: Project) -> dict[str, list[tuple[str, Any]]]:
    """courier -> [(group name, group member config)]."""
    out: dict[str, list[tuple[str, Any]]] = {}
    for group in project.groups.values():
        for member in group.couriers:
            out.setdefault(member.name, []).append((group.name, member))
    return out


def next_runs(project: Project, now: datetime) -> dict[str, datetime | None]:
    """group -> its next fire time after now."""
    return {name: schedule_of(project, g).next_after(now) for name, g in project.groups.items()}


def next_run_of(
    members: list[tuple[str, Any]], upcoming: dict[str, datetime | None]
) -> dict[str, str] | None:
    soonest = sorted((at, g) for g, _ in members if (at := upcoming.get(g)) is not None)
    return {"group": soonest[0][1], "at": iso_utc(soonest[0][0])} if soonest else None


def member_view(
    project: Project, name: str, members: list[tuple[str, Any]], now: datetime
) -> tuple[ZoneInfo, datetime]:
    """(the zone of the courier's file dates as its first group's member, start of its
    lookback)."""
    courier = project.courier(name)
    if not members:
        return project.time_zone, now - (duration(courier.lookback) or DEFAULT_BACKLOG)
    group_name, member = members[0]
    zone = file_zone(project, project.groups[group_name])
    return zone, now - (member_lookback(project, member) or DEFAULT_BACKLOG)


def backlog_of(
    courier: str,
    storage: str,
    since: datetime,
    files: list[PlannedFile],
    loaded_versions: LoadedVersions,
) -> dict[str, Any]:
    """{since, files, bytes, oldest} of the files not loaded yet."""
    loaded = loaded_versions(courier, storage, [f.key for f in files])
    new = [f for f in files if (f.info.size, f.info.version) not in loaded.get(f.key, ())]
    return {
        "since": iso_utc(since),
        "files": len(new),
        "bytes": sum(f.info.size for f in new),
        "oldest": iso_utc(min(f.partition for f in new)) if new else None,
    }


def courier_status(context: Context, now: datetime) -> list[dict[str, Any]]:
    project = context.project
    members_of = memberships(project)
    upcoming = next_runs(project, now)
    rows = []
    with context.workspace() as ws:
        for name, courier in sorted(project.couriers.items()):
            members = members_of.get(name, [])
            summary = ws.state.courier_summary(name)
            zone, since = member_view(project, name, members, now)
            backlog: dict[str, Any]
            try:
                files = context.discover(courier, Window(since, now), tz=zone)
                backlog = backlog_of(name, courier.storage, since, files, ws.state.loaded_versions)
            except CourierError as exc:
                backlog = {"since": iso_utc(since), "files": 0, "bytes": 0, "error": str(exc)}
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
                    "next_run": next_run_of(members, upcoming),
                }
            )
    return rows
