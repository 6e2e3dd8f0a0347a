"""Every config check beyond parsing, in one place: the subsystems' checks, imported explicitly.

courier.project loads and cross-checks files (couriers name feeds, queries and storages that
exist); the checks that need a subsystem's knowledge live with that subsystem and are listed
here: group schedules and run_after, format options, stream auth, webhooks, sources. Front ends
(`courier validate`, `courier serve`, the scheduler) get them through load_project, which loads
with courier.project.read_project and adds these checks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from courier.destinations.checks import check_destinations
from courier.errors import ConfigError
from courier.formats.options import check_tree_options
from courier.ingest.checks import check_streams
from courier.ingest.webhooks import check_webhooks
from courier.project import Project, read_project
from courier.scheduling.checks import check_groups
from courier.sources.config import check_sources

CHECKS: list[Callable[[Project], list[ConfigError]]] = [
    check_groups,  # cron, time zones, run_after cycles
    check_tree_options,  # record_path, force_list, ... of the cbor/json/xml formats
    check_streams,  # each stream's [auth], storage, format
    check_webhooks,  # signed webhooks and API-key headers
    check_sources,  # config/sources/*.toml
    check_destinations,  # [destinations.NAME] and each feed's choice of one
]


def check_project(project: Project) -> list[ConfigError]:
    """Every subsystem's problems with the project, in CHECKS order."""
    errors: list[ConfigError] = []
    for check in CHECKS:
        errors.extend(check(project))
    return errors


def load_project(root: str | Path | None = None, *, strict: bool = True) -> Project:
    """Load the project and run every check (what the front ends call). strict: raise
    ConfigErrors when anything is wrong."""
    return read_project(root, strict=strict, checks=check_project)
