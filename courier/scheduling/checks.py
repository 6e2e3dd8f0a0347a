"""Validation of groups (called by courier.validate): cron, time zones, run_after."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from courier.config.models import GroupConfig
from courier.errors import ConfigError
from courier.project import Project
from courier.scheduling.cron import parse_cron


def check_groups(project: Project) -> list[ConfigError]:
    """Invalid cron, unknown time zone, unknown run_after group, run_after cycles."""
    errors: list[ConfigError] = []
    for name, group in project.groups.items():
        path = project.files.get(f"config/groups:{name}")
        zone: ZoneInfo | None = None
        try:
            zone = ZoneInfo(group.time_zone or project.settings.project.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            if group.time_zone:
                errors.append(
                    ConfigError(
                        f"unknown time zone {group.time_zone!r}: use an IANA name like 'UTC' "
                        "or 'Europe/Berlin'",
                        path,
                        "time_zone",
                    )
                )
        try:
            parse_cron(group.schedule, zone or ZoneInfo("UTC"))
        except ValueError as exc:
            errors.append(
                ConfigError(
                    f"invalid cron schedule {group.schedule!r}: {exc}. Use 'minute hour day "
                    "month weekday', e.g. '0 6 * * *' (daily 06:00) or '5 * * * *' (hourly)",
                    path,
                    "schedule",
                )
            )
        for i, dep in enumerate(group.run_after):
            if dep == name:
                errors.append(
                    ConfigError("a group cannot run after itself", path, f"run_after[{i}]")
                )
            elif dep not in project.groups:
                known = ", ".join(sorted(g for g in project.groups if g != name)) or "none"
                errors.append(
                    ConfigError(
                        f"group {dep!r} is not defined (groups: {known}); add "
                        f"config/groups/{dep}.toml or remove it from run_after",
                        path,
                        f"run_after[{i}]",
                    )
                )
    for cycle in run_after_cycles(project.groups):
        first = cycle[0]
        errors.append(
            ConfigError(
                f"run_after makes a cycle: {' -> '.join([*cycle, first])}; no group of it could "
                "ever start. Remove one of these run_after entries",
                project.files.get(f"config/groups:{first}"),
                "run_after",
            )
        )
    return errors


def run_after_cycles(groups: dict[str, GroupConfig]) -> list[list[str]]:
    """Each cycle once, rotated to start at its smallest name."""
    cycles: set[tuple[str, ...]] = set()

    def walk(name: str, path: list[str]) -> None:
        for dep in groups[name].run_after:
            if dep == name or dep not in groups:
                continue
            if dep in path:
                cycle = path[path.index(dep) :]
                k = cycle.index(min(cycle))
                cycles.add(tuple(cycle[k:] + cycle[:k]))
            else:
                walk(dep, [*path, dep])

    for name in sorted(groups):
        walk(name, [name])
    return [list(c) for c in sorted(cycles)]
