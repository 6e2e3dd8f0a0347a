"""Run a source once (until it has nothing more) or every interval until stopped, one source
or all of a project's (`SourceLoops`, what `courier scheduler` starts: a thread per source).

A round holds the lease `source:NAME` in the state store (`courier.leases`), so two processes
(two schedulers, or a scheduler and `courier poll`) never poll one source at once: the second
skips its round. A failed round is logged, and alerted once per streak of failures (alert kind
`source_failed`, recorded in courier.alerts), never fatal: the next round resumes from the
saved cursor.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from functools import partial
from typing import Any

from courier.errors import CourierError, not_found
from courier.project import Project
from courier.records import Lease
from courier.scheduling.leases import take_lease
from courier.sources.config import SourceConfig, load_sources
from courier.state.base import StateStore

log = logging.getLogger("courier.sources")

THold = Callable[[], AbstractContextManager[Any]]
TReport = Callable[[dict[str, Any] | None, Exception | None], None]


def project_sources(project: Project) -> dict[str, SourceConfig]:
    """Every source of the project (ConfigErrors naming file and key for each problem)."""
    return load_sources(project.root, {k: v.payload for k, v in project.streams.items()})


def get_source(project: Project, name: str) -> SourceConfig:
    sources = project_sources(project)
    if name not in sources:
        raise not_found("source", name, sources, f"add config/sources/{name}.toml")
    return sources[name]


def describe(summary: dict[str, Any]) -> str:
    """One line saying what a round landed."""
    if summary.get("held_by"):
        return (
            f"source {summary['source']!r}: skipped, {summary['held_by']} is running it; the "
            "next round tries again"
        )
    if summary["type"] == "http_poll":
        return (
            f"source {summary['source']!r}: {summary['pages']} page(s), "
            f"{summary['records']} record(s), {summary['landed']} landed in stream "
            f"{summary['stream']!r} ({summary['duplicates']} duplicate(s) skipped), "
            f"{len(summary['parts'])} part file(s); cursor {summary['cursor']!r}"
        )
    return (
        f"source {summary['source']!r}: {summary['files']} file(s), {summary['bytes']} bytes "
        f"landed in stream {summary['stream']!r}"
    )


def run_source(
    project: Project,
    name: str,
    *,
    source: SourceConfig | None = None,
    stop: threading.Event | None = None,
    hold: THold | None = None,
) -> dict[str, Any]:
    """Fetch until the source has nothing more (or `stop` is set); the summary of what landed.

    `source` overrides the config file's (e.g. another URL); `hold` wraps each use of the
    feed database (see SourceRuntime)."""
    from courier.sources.base import SourceRuntime
    from courier.sources.poll import poll
    from courier.sources.pull import pull

    source = source or get_source(project, name)
    with SourceRuntime(project, source, stop=stop, hold=hold) as rt:
        scope = f"source:{source.name}"
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        held_by = rt.state(partial(_claim, scope, holder))
        if held_by is not None:
            return {
                "type": source.type,
                "source": source.name,
                "stream": source.stream,
                "held_by": f"process {held_by.pid} on {held_by.host}",
            }
        try:
            if source.type == "http_poll":
                return {"type": source.type, **poll(rt).as_dict()}
            return {"type": source.type, **pull(rt).as_dict()}
        finally:
            try:
                rt.state(partial(_release, scope, holder))
            except Exception:  # it lapses when this process ends
                log.warning("could not release lease %s", scope, exc_info=True)


def _claim(scope: str, holder: str, s: StateStore) -> Lease | None:
    """Take the lease of scope; None when taken, else the row of the live process holding it."""
    return take_lease(s, scope, holder, datetime.now(UTC))


def _release(scope: str, holder: str, s: StateStore) -> None:
    s.drop_lease(scope, holder)


def run_forever(
    project: Project,
    name: str,
    stop: threading.Event,
    report: TReport,
    *,
    hold: THold | None = None,
    once: bool = False,
) -> None:
    """run_source every interval (from the start of one round to the next) until stop is set;
    a failed round is reported, not fatal. With once, a single round."""
    source = get_source(project, name)
    while not stop.is_set():
        started = time.monotonic()
        try:
            summary = run_source(project, name, stop=stop, hold=hold)
        except Exception as exc:
            report(None, exc)
        else:
            report(summary, None)
        if once:
            return
        stop.wait(max(0.0, started + source.interval_seconds - time.monotonic()))


class SourceLoops:
    """Every source of a project in a thread of its own, each round every `interval` (or one
    round each, with once); all of them end after their current page when `stop` is set."""

    def __init__(
        self,
        project: Project,
        stop: threading.Event,
        *,
        once: bool = False,
        hold: THold | None = None,
        alerter: Any = None,
        on_round: Callable[[], None] | None = None,
    ):
        self.project = project
        self.stop = stop
        self.once = once
        self.hold = hold
        self.alerter = alerter
        self.on_round = on_round or (lambda: None)
        self.sources = project_sources(project)  # config problems stop the start-up
        self.threads: dict[str, threading.Thread] = {}
        self.failing: set[str] = set()
        self.finished: set[str] = set()
        self.rounds = 0
        self.failures = 0
        self._lock = threading.Lock()  # _report runs in every source's thread

    def start(self) -> None:
        for name, source in sorted(self.sources.items()):
            thread = threading.Thread(
                target=self._loop, args=(name,), name=f"source-{name}", daemon=True
            )
            self.threads[name] = thread
            log.info(
                "source %s (%s into %s): %s",
                name,
                source.type,
                source.stream,
                "one round" if self.once else f"every {source.interval}",
            )
            thread.start()

    def _loop(self, name: str) -> None:
        try:
            run_forever(
                self.project, name, self.stop, partial(self._report, name), hold=self.hold,
                once=self.once,
            )  # fmt: skip
        except Exception:  # the config went away under us: this source stops, the rest go on
            log.exception("source %s stopped", name)
        finally:
            self.finished.add(name)
            self.on_round()

    def _report(self, name: str, summary: dict[str, Any] | None, error: Exception | None) -> None:
        # The counters and the failing set change under one lock (source threads report at
        # the same time; `+=` on an attribute is not atomic across threads).
        with self._lock:
            self.rounds += 1
            recovered = error is None and name in self.failing
            first_failure = error is not None and name not in self.failing
            if error is None:
                self.failing.discard(name)
            else:
                self.failures += 1
                self.failing.add(name)
        if error is None:
            assert summary is not None
            log.info("%s", describe(summary))
            if recovered:
                log.info("source %s: succeeded again", name)
        else:
            if isinstance(error, CourierError):
                log.error("source %s: round failed: %s", name, error)
            else:  # not one of ours: the traceback helps
                log.error("source %s: round failed: %r", name, error, exc_info=error)
            if first_failure:
                self._alert(name, error)
        self.on_round()

    def _alert(self, name: str, error: Exception) -> None:
        if self.alerter is None:
            return
        from courier.alerts import Alert

        source = self.sources[name]
        alert = Alert(
            kind="source_failed",
            message=(
                f"source {name} ({source.type} into stream {source.stream}) failed: {error}; "
                "it is retried every interval (no further alert until it has succeeded)"
            ),
            details={"source": name, "stream": source.stream, "error": type(error).__name__},
        )
        self.alerter.fire(alert)
        from courier.sources.base import in_state

        try:  # in courier.alerts with the group runs' alerts
            in_state(self.project, lambda s: s.record_alert(alert), self.hold or nullcontext)
        except CourierError as exc:
            log.warning("source %s: the alert was sent but not recorded: %s", name, exc)

    def alive(self) -> list[str]:
        return [name for name, t in self.threads.items() if t.is_alive()]

    def done(self) -> bool:
        """Every source's loop has ended (with once: each ran its round)."""
        return self.finished >= set(self.threads)

    def join(self, until: float) -> list[str]:
        """Wait until the monotonic time `until` for every thread; the names still running."""
        if self.alive():
            log.info("waiting for the round(s) of source(s) %s", ", ".join(self.alive()))
        for thread in self.threads.values():
            thread.join(max(0.0, until - time.monotonic()))
        return self.alive()
