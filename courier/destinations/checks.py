"""`courier validate` checks of [destinations.NAME] and of the feeds' destination choice."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from courier.errors import ConfigError

if TYPE_CHECKING:
    from courier.project import Project

SETTINGS = "config/courier.toml"


def check_destinations(project: Project) -> list[ConfigError]:
    errors: list[ConfigError] = []
    settings = project.settings
    defined = ["duckdb", *settings.destinations]
    settings_path = project.root / SETTINGS
    for name, config in settings.destinations.items():
        if config.type != "delta":
            continue
        if config.storage not in settings.storages:
            errors.append(
                ConfigError(
                    f"destination {name!r} names storage {config.storage!r}, which is not "
                    f"defined: add [storages.{config.storage}] (defined: "
                    f"{', '.join(settings.storages)})",
                    settings_path,
                    f"destinations.{name}.storage",
                )
            )
        if importlib.util.find_spec("deltalake") is None:
            errors.append(
                ConfigError(
                    f"destination {name!r} is a Delta destination and needs deltalake: "
                    "pip install 'courier[delta]' (make install does it)",
                    settings_path,
                    f"destinations.{name}.type",
                )
            )
    if settings.feeds.destination not in defined:
        errors.append(
            ConfigError(
                f"destination {settings.feeds.destination!r} is not defined: add "
                f"[destinations.{settings.feeds.destination}] (defined: {', '.join(defined)})",
                settings_path,
                "feeds.destination",
            )
        )
    for feed in project.feeds.values():
        if feed.destination is not None and feed.destination not in defined:
            errors.append(
                ConfigError(
                    f"destination {feed.destination!r} is not defined: add [destinations."
                    f"{feed.destination}] to {SETTINGS} (defined: {', '.join(defined)})",
                    project.files.get(f"feeds:{feed.id}"),
                    "destination",
                )
            )
    return errors
