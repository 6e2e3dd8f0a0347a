"""`courier scheduler`: run every group on its schedule, and every source on its interval,
until stopped. No business logic here: APScheduler wakes the loop at each group's fire times (a
CronTrigger in the group's zone); the loop asks `courier.scheduling.planning` what is due and
what may start, and hands runs to a GroupRunner. Sources run in threads of `courier.sources.run`
(`SourceLoops`), from start-up, each every `interval`; a failed round is logged and alerted,
never fatal.

- On start, group runs left 'running' by a dead process are marked interrupted, and fire
  times missed while down are queued per the group's `catch_up` (all | latest | none), from
  the newest scheduled time the state store has as finished.
- A group runs after the groups in its `run_after` have finished their runs at or before its
  scheduled time; runs of one group never overlap; up to `max_groups` groups run at once.
- A run held by another process (lease) is retried a little later: when that process
  finishes it is skipped as already run, when that process died it is taken over.
- SIGTERM/SIGINT: no new runs start, waits end, sources stop after the page or file they are
  landing, running courier runs get `grace` seconds to finish; then (or on a second signal)
  the process exits and abandons them, which leaves no trace in the feed tables (their
  transaction never commits); the next start runs them again. An abandoned source round is
  safe too: its part key and cursor are in the state store.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from courier.context import Context
from courier.scheduling.cron import Schedule
from courier.scheduling.planning import (
    due_times,
    is_ready,
    run_after_order,
    schedule_of,
    scheduled_progress,
)
from courier.scheduling.runner import GroupRunner, Stopped
from courier.sources.run import SourceLoops
from courier.windows import iso_utc

log = logging.getLogger("courier.scheduler")

HELD_RETRY = timedelta(seconds=5)


@dataclass
class Item:
    at: datetime
    group: str
    not_before: datetime | None = None

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.at, self.group)


class Scheduler:
    def __init__(
        self,
        context: Context,
        *,
        since: datetime | None = None,
        once: bool = False,
        sources: bool = True,
        max_groups: int = 2,
        grace: float = 60.0,
        tick: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        runner: GroupRunner | None = None,
        observers: list[Callable[[dict[str, Any]], None]] | None = None,
    ):
        self.context = context
        self.project = context.project
        self.since = since
        self.once = once
        self.run_sources = sources
        self.max_groups = max_groups
        self.grace = grace
        self.tick = tick
        self.now = now
        self.stopping = threading.Event()  # no new runs
        self.runner = runner or GroupRunner(context, stop=self.stopping, now=now)
        self.wake = threading.Event()
        self.schedules: dict[str, Schedule] = {
            name: schedule_of(self.project, group) for name, group in self.project.groups.items()
        }
        self.waiting: list[Item] = []
        self.running: dict[Future[dict[str, Any]], Item] = {}
        self.cursor: dict[str, datetime] = {}
        self.results: list[dict[str, Any]] = []
        self.sources: SourceLoops | None = None
        self.observers = observers or []  # called with each finished group run's record
        self._signals = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: abandoning the running courier runs now")
            logging.shutdown()
            os._exit(130)
        log.info("%s: finishing; no new runs start", signal.Signals(signum).name)
        self.stop()

    def run(self) -> int:
        """Run until stopped (or, with once, until what is due now has run). Exit code."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            return self._run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _run(self) -> int:
        if self.run_sources:  # reads config/sources/ first: a config problem stops the start
            self.sources = SourceLoops(
                self.project,
                self.stopping,
                once=self.once,
                hold=self.context.hold,
                alerter=self.runner.alerter,
                on_round=self.wake.set,
            )
        interrupted = self.runner.mark_interrupted()
        if interrupted:
            log.info("%d group run(s) of a stopped process marked interrupted", interrupted)
        started = self.now()
        self._catch_up(started)
        aps = None
        if not self.once:
            aps = BackgroundScheduler(timezone=UTC)
            for name, schedule in self.schedules.items():
                aps.add_job(
                    self.wake.set,
                    schedule.trigger,
                    id=name,
                    name=f"group {name}",
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=None,
                )
            aps.start()
            for name, schedule in self.schedules.items():
                nxt = schedule.next_after(started)
                log.info("group %s: next run %s", name, iso_utc(nxt) if nxt else "never")
        pool = ThreadPoolExecutor(max_workers=self.max_groups, thread_name_prefix="scheduler")
        if self.sources is not None:
            self.sources.start()
        try:
            self._loop(pool)
        finally:
            if aps is not None:
                aps.shutdown(wait=False)
            abandoned, abandoned_sources = self._drain()
            pool.shutdown(wait=not abandoned, cancel_futures=True)
        if abandoned:
            log.warning("abandoned %d running group run(s); they run again on restart", abandoned)
        if abandoned_sources:
            log.warning(
                "abandoned source round(s) of %s; the next round resumes from the saved cursor",
                ", ".join(abandoned_sources),
            )
        if abandoned or abandoned_sources:
            logging.shutdown()
            os._exit(3)  # running threads cannot be joined; their transactions never commit
        log.info("scheduler stopped")
        return 0

    def _catch_up(self, started: datetime) -> None:
        for name in run_after_order(self.project.groups):
            group = self.project.groups[name]
            last, unfinished = self.runner.with_state(
                functools.partial(scheduled_progress, group=name)
            )
            if last is None and self.since is not None:
                last = self.since
            schedule = self.schedules[name]
            due = due_times(schedule, group.catch_up, last, started, started, unfinished)
            if due:
                log.info(
                    "group %s: %d run(s) due since %s (catch_up = %s)",
                    name,
                    len(due),
                    iso_utc(last) if last else "start",
                    group.catch_up,
                )
            self.waiting.extend(Item(at, name) for at in due)
            self.cursor[name] = started

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            now = self.now()
            if not self.once:
                self._queue_fired(now)
            self._collect()
            self._start_ready(pool, now)
            sources_done = self.sources is None or self.sources.done()
            if self.once and not self.waiting and not self.running and sources_done:
                return
            self.wake.wait(self.tick)

    def _queue_fired(self, now: datetime) -> None:
        for name, schedule in self.schedules.items():
            for at in schedule.fires(self.cursor[name], now):
                log.info("group %s: due at %s", name, iso_utc(at))
                self.waiting.append(Item(at, name))
            self.cursor[name] = max(self.cursor[name], now)

    def _start_ready(self, pool: ThreadPoolExecutor, now: datetime) -> None:
        self.waiting.sort(key=lambda i: i.key)
        for item in list(self.waiting):
            if len(self.running) >= self.max_groups:
                return
            if item.not_before is not None and item.not_before > now:
                continue
            waiting = [i.key for i in self.waiting]
            running = [i.key for i in self.running.values()]
            if not is_ready(item.key, waiting, running, self.project.groups):
                continue
            self.waiting.remove(item)
            future = pool.submit(self.runner.run, item.group, item.at, trigger="scheduled")
            future.add_done_callback(lambda _: self.wake.set())
            self.running[future] = item

    def _collect(self) -> None:
        for future, item in list(self.running.items()):
            if not future.done():
                continue
            del self.running[future]
            try:
                result = future.result()
            except Stopped:
                log.info("group %s at %s: abandoned at stop", item.group, iso_utc(item.at))
                continue
            except Exception:
                log.exception("group %s at %s failed", item.group, iso_utc(item.at))
                continue
            self.results.append(result)
            for observe in self.observers:
                try:
                    observe(result)
                except Exception:
                    log.exception(
                        "group %s at %s: an observer failed", item.group, iso_utc(item.at)
                    )
            status = result["status"]
            if status == "held":
                log.info(
                    "group %s at %s: %s; checking again shortly",
                    item.group,
                    iso_utc(item.at),
                    result["error"],
                )
                self.waiting.append(Item(item.at, item.group, self.now() + HELD_RETRY))
            elif status == "already_run":
                log.info("group %s at %s: already run", item.group, iso_utc(item.at))

    def _drain(self) -> tuple[int, list[str]]:
        """After a stop: give running group runs and source rounds `grace` seconds; return how
        many group runs remain and which sources are still in a round."""
        until = time.monotonic() + self.grace
        pending = [f for f in self.running if not f.done()]
        if pending:
            log.info("waiting up to %.0fs for %d running group run(s)", self.grace, len(pending))
            wait(pending, timeout=self.grace)
        sources = self.sources.join(until) if self.sources is not None else []
        self._collect()
        return sum(1 for f in self.running if not f.done()), sources
