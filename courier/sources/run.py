"""Run a source once (until it has nothing more) or every interval until stopped."""

from __future__ import annotations

import logging
import threading
from typing import Any

from courier.errors import ConfigError, CourierError
from courier.project import Project
from courier.sources.config import SourceConfig, load_sources

log = logging.getLogger("courier.sources")


def get_source(project: Project, name: str) -> SourceConfig:
    sources = load_sources(project.root, {k: v.payload for k, v in project.streams.items()})
    if name not in sources:
        known = ", ".join(sorted(sources)) or "none"
        raise ConfigError(
            f"no source named {name!r} (known: {known}); add config/sources/{name}.toml"
        )
    return sources[name]


def run_source(project: Project, name: str) -> dict[str, Any]:
    """Fetch until the source has nothing more; the summary of what landed."""
    from courier.sources.base import SourceRuntime
    from courier.sources.poll import poll
    from courier.sources.pull import pull

    source = get_source(project, name)
    with SourceRuntime(project, source) as rt:
        if source.type == "http_poll":
            return {"type": source.type, **poll(rt).as_dict()}
        return {"type": source.type, **pull(rt).as_dict()}


def run_forever(project: Project, name: str, stop: threading.Event, report: Any) -> None:
    """run_source every interval until stop is set; a failed round is reported, not fatal."""
    source = get_source(project, name)
    while not stop.is_set():
        try:
            report(run_source(project, name), None)
        except CourierError as exc:
            report(None, exc)
        stop.wait(source.interval_seconds)
