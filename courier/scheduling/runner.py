"""Group runs: what `courier group run` and each scheduler tick call.

`GroupRunner` does the work of one group run: couriers in parallel (bounded), each waits for its
files, then runs through `Context.run` with the member's run options (file dates' zone,
`required`, lookback); earlier windows that failed are retried first; alerts go to the sinks;
leases in the state store keep two processes from running one window twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from courier.alerts import Alert, Alerter
from courier.config.models import GroupConfig
from courier.errors import CourierError, retry_transient
from courier.patterns import FilePattern
from courier.records import GroupRunRecord, Lease
from courier.scheduling.leases import holder_alive, take_lease
from courier.scheduling.planning import (
    MemberPlan,
    file_zone,
    get_group,
    group_zone,
    member_options,
    plan_group,
)
from courier.windows import Partition, Window, iso_utc

if TYPE_CHECKING:
    from courier.context import Context
    from courier.state.base import StateStore

log = logging.getLogger("courier.groups")

RETRY_HORIZON = timedelta(days=7)  # failed windows older than this are left to `courier run`
OK_STATUSES = {"succeeded", "skipped"}


class Stopped(CourierError):
    """The scheduler is stopping: the group run is abandoned (nothing half-done is kept)."""


class GroupRunner:
    """Runs groups: what `courier group run` and each scheduler tick call.

    sleep/clock/now are parameters so tests can drive waits without waiting; `stop` ends
    waits early (the scheduler sets it on SIGTERM)."""

    def __init__(
        self,
        context: Context,
        *,
        alerter: Alerter | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        stop: threading.Event | None = None,
        poll_seconds: float = 60.0,
        lock_timeout: float | None = None,
        wait: bool = True,
    ):
        self.context = context
        self.wait = wait  # False: do not poll for missing files (`group run --no-wait`)
        self.project = context.project
        self.alerter = alerter or Alerter.for_settings(self.project.settings.alerts)
        self.stop = stop or threading.Event()
        self.sleep = sleep or self._sleep
        self.clock = clock
        self.now = now
        self.poll_seconds = poll_seconds
        self.lock_timeout = lock_timeout
        self.host = socket.gethostname()
        self.holder = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease_lock = threading.Lock()
        self._held: set[str] = set()
        self._feed_locks: dict[str, threading.Lock] = {}

    # -- plumbing ----------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise Stopped("the scheduler is stopping")

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped("the scheduler is stopping")

    def with_state(self, fn: Callable[[StateStore], Any]) -> Any:
        """Run fn on the state store, waiting while another process holds the database."""

        def attempt() -> Any:
            with self.context.state() as state:
                return fn(state)

        return retry_transient(
            attempt, until=self._deadline(), clock=self.clock, sleep=self.sleep,
            on_retry=lambda exc: log.info("waiting for the feed database: %s", exc),
        )  # fmt: skip

    def _deadline(self) -> float | None:
        """When waiting for the feed database gives up (lock_timeout from now; None: never)."""
        return None if self.lock_timeout is None else self.clock() + self.lock_timeout

    def _feed_lock(self, feed: str) -> threading.Lock:
        with self._lease_lock:
            return self._feed_locks.setdefault(feed, threading.Lock())

    # -- leases ------------------------------------------------------------------------------
    def claim(self, scope: str) -> Lease | None:
        """Take the lease of scope; return None when taken, else the live holder's lease."""
        with self._lease_lock:
            if scope in self._held:
                return Lease(scope, self.holder, self.host, os.getpid())
            now = self.now()
            held_by = self.with_state(lambda state: take_lease(state, scope, self.holder, now))
            if held_by is None:
                self._held.add(scope)
            return held_by  # type: ignore[no-any-return]

    def release(self, scope: str) -> None:
        with self._lease_lock:
            if scope not in self._held:
                return
            self._held.discard(scope)
        try:
            self.with_state(lambda state: state.drop_lease(scope, self.holder))
        except (CourierError, Stopped):
            log.warning("could not release lease %s; it lapses when this process ends", scope)

    # -- a group run ---------------------------------------------------------------------------
    def run(
        self, group_name: str, at: datetime, *, trigger: str = "manual", dry_run: bool = False
    ) -> dict[str, Any]:
        """Run the group as the scheduler would at `at`; return the group run record."""
        group = get_group(self.project, group_name)
        at = at.astimezone(UTC)
        plans = plan_group(self.project, group_name, at)
        if dry_run:
            return self._dry_run(group, at, plans)
        self.mark_interrupted()
        group_run_id = f"{at:%Y%m%dT%H%M%S}-{group.name}-{uuid.uuid4().hex[:6]}"
        record: dict[str, Any] = {
            "group_run_id": group_run_id,
            "group": group.name,
            "scheduled_at": iso_utc(at),
            "trigger": trigger,
            "status": "running",
            "time_zone": group_zone(self.project, group).key,
            "couriers": [],
            "alerts": [],
            "started_at": iso_utc(self.now()),
            "error": None,
        }
        scope = f"group:{group.name}@{iso_utc(at)}"
        if trigger == "scheduled":
            held_by = self.claim(scope)
            if held_by is not None:
                record["status"] = "held"
                record["error"] = f"being run by {held_by.host} pid {held_by.pid}"
                return record
        try:
            return self._run(group, at, plans, record, trigger)
        finally:
            if trigger == "scheduled":
                self.release(scope)

    def _run(
        self,
        group: GroupConfig,
        at: datetime,
        plans: list[MemberPlan],
        record: dict[str, Any],
        trigger: str,
    ) -> dict[str, Any]:
        clock = self.clock()
        if trigger == "scheduled":
            done = self.with_state(
                lambda s: [
                    r
                    for r in s.group_runs(group.name, 5, trigger="scheduled", scheduled_at=at)
                    if r.status not in ("running", "abandoned", "interrupted")
                ]
            )
            if done:
                record["status"] = "already_run"
                record["error"] = f"group run {done[0].group_run_id} ran this scheduled time"
                return record
        retries = self.with_state(lambda s: self._pending_retries(s, group, plans, at))
        members = [
            {"courier": p.courier, "window": p.window.as_dict() if p.window else None,
             "status": "pending", "run_id": None, "retry": False}
            for p in plans
        ] + [
            {"courier": c, "window": w.as_dict(), "status": "pending", "run_id": None,
             "retry": True}
            for c, ws in retries.items() for w in ws
        ]  # fmt: skip
        row = GroupRunRecord(
            record["group_run_id"], group.name, at, trigger, "running", members,
            started_at=self.now(), host=self.host, pid=os.getpid(),
        )  # fmt: skip
        self.with_state(lambda s: s.start_group_run(row))
        log.info("group %s at %s: %d courier(s) starting", group.name, iso_utc(at), len(plans))
        alerts: list[Alert] = []
        outcomes: list[dict[str, Any]] = []
        with ThreadPoolExecutor(
            max_workers=min(group.max_parallel, len(plans)) or 1,
            thread_name_prefix=f"group-{group.name}",
        ) as pool:
            futures = [
                pool.submit(
                    self._run_member, p, retries.get(p.courier, []), record, trigger, alerts
                )
                for p in plans
            ]
            for future in futures:
                outcomes.extend(future.result())
        record["couriers"] = outcomes
        record["status"] = group_status(outcomes, stopped=self.stop.is_set())
        record["finished_at"] = iso_utc(self.now())
        record["duration_s"] = round(self.clock() - clock, 3)
        failed = [o for o in outcomes if o["status"] == "failed"]
        if failed:
            record["error"] = f"{len(failed)} courier run(s) failed: " + ", ".join(
                sorted({o["courier"] for o in failed})
            )
        record["alerts"] = [a.payload() for a in alerts]
        finish = replace(
            row,
            status=record["status"],
            members=[member_entry(o) for o in outcomes],
            error=record["error"],
            finished_at=self.now(),
            duration_s=record["duration_s"],
        )

        def save(state: StateStore) -> None:
            state.finish_group_run(finish)
            for alert in alerts:
                state.record_alert(alert)

        try:
            self.with_state(save)
        except Stopped:
            log.warning("group run %s: stopped before its record was saved", record["group_run_id"])
        log.info(
            "group %s at %s: %s (%.1fs)",
            group.name,
            iso_utc(at),
            record["status"],
            record["duration_s"],
        )
        return record

    def _dry_run(self, group: GroupConfig, at: datetime, plans: list[MemberPlan]) -> dict[str, Any]:
        retries = self.with_state(lambda s: self._pending_retries(s, group, plans, at))
        couriers = []
        for plan in plans:
            ctx = self.context
            windows = [(w, True) for w in retries.get(plan.courier, [])]
            windows.append((plan.window, False))
            for window, retry in windows:
                entry: dict[str, Any] = {**plan.as_dict(), "retry": retry}
                if window is None:
                    entry.update(status="skipped", note="the window is empty", files={})
                elif not retry and not plan.partitions:
                    entry.update(status="skipped", note="no partition starts in the window")
                else:
                    options = member_options(self.project, plan, now=self.now(), dry_run=True)
                    result = ctx.run(plan.courier, window, options=options)
                    grain = ctx.grain(ctx.project.courier(plan.courier), plan.file_zone)
                    entry.update(result)
                    entry["partitions"] = [iso_utc(p.start) for p in grain.partitions(window)]
                couriers.append(entry)
        return {
            "group_run_id": None,
            "group": group.name,
            "scheduled_at": iso_utc(at),
            "trigger": "dry_run",
            "status": "dry_run",
            "time_zone": group_zone(self.project, group).key,
            "file_time_zone": file_zone(self.project, group).key,
            "couriers": couriers,
            "alerts": [],
            "error": None,
        }

    def _pending_retries(
        self, state: StateStore, group: GroupConfig, plans: list[MemberPlan], at: datetime
    ) -> dict[str, list[Window]]:
        """Earlier scheduled windows of this group's couriers that never succeeded."""
        current = {(p.courier, p.window) for p in plans}
        members = {p.courier: p.member for p in plans}
        now = self.now()
        seen: set[tuple[str, Window]] = set()
        out: dict[str, list[Window]] = {}
        since = at - RETRY_HORIZON
        for run in state.group_runs(group.name, 1000, trigger="scheduled", since=since):
            if run.scheduled_at >= at:
                continue
            for m in run.members:
                if m.get("status") in (*OK_STATUSES, "held") or not m.get("window"):
                    continue
                if m["courier"] not in members:
                    continue  # no longer in the group
                window = Window(
                    datetime.fromisoformat(m["window"]["start"].replace("Z", "+00:00")),
                    datetime.fromisoformat(m["window"]["end"].replace("Z", "+00:00")),
                )
                key = (m["courier"], window)
                if key in current or key in seen:
                    continue
                seen.add(key)
                attempts = state.window_runs(m["courier"], window.start, window.end)
                if any(r.status in OK_STATUSES for r in attempts):
                    continue
                if any(
                    r.status == "running" and holder_alive(r.host, r.pid, now) for r in attempts
                ):
                    continue
                failures = sum(1 for r in attempts if r.status in ("failed", "running"))
                if failures > members[m["courier"]].retries:
                    continue  # given up: the alerts said so; `courier run` can still do it
                out.setdefault(m["courier"], []).append(window)
        for windows in out.values():
            windows.sort(key=lambda w: w.start)
        return out

    # -- one courier of a group ----------------------------------------------------------------
    def _run_member(
        self,
        plan: MemberPlan,
        retry_windows: list[Window],
        record: dict[str, Any],
        trigger: str,
        alerts: list[Alert],
    ) -> list[dict[str, Any]]:
        ctx = self.context
        outcomes = []
        for window, retry in [*((w, True) for w in retry_windows), (plan.window, False)]:
            try:
                outcome = self._run_window(ctx, plan, window, retry, record, trigger, alerts)
            except Stopped:
                outcome = synthetic(plan, window, "abandoned", "the scheduler stopped first")
            except Exception as exc:  # one courier's fault never stops the others
                log.exception("group %s: courier %s failed", plan.group, plan.courier)
                outcome = synthetic(plan, window, "failed", None)
                outcome["error"] = str(exc) if isinstance(exc, CourierError) else repr(exc)
                self._alert(alerts, "failed", plan, window, record, None, outcome["error"])
            outcome["retry"] = retry
            outcomes.append(outcome)
        return outcomes

    def _run_window(
        self,
        ctx: Context,
        plan: MemberPlan,
        window: Window | None,
        retry: bool,
        record: dict[str, Any],
        trigger: str,
        alerts: list[Alert],
    ) -> dict[str, Any]:
        self._check_stop()
        if window is None:
            return synthetic(plan, window, "skipped", "the window is empty")
        courier = ctx.project.courier(plan.courier)
        partitions = ctx.grain(courier, plan.file_zone).partitions(window)
        if not partitions and not retry:
            return synthetic(plan, window, "skipped", "no partition starts in the window")
        scope = f"courier:{plan.courier}@{iso_utc(window.start)}/{iso_utc(window.end)}"
        held_by = self.claim(scope)
        if held_by is not None:
            note = f"window being run by {held_by.host} pid {held_by.pid}"
            return synthetic(plan, window, "held", note)
        try:
            missing = self._wait_for_files(ctx, plan, window, partitions, trigger)
            missing_alert = None
            if missing and plan.member.required:
                waited = f"after waiting {plan.member.wait}" if self.wait else "(not waiting)"
                keys = ", ".join(iso_utc(p.start) for p in missing[:10])
                missing_alert = self._alert(
                    alerts, "missing_files", plan, window, record, None,
                    f"courier {plan.courier}: no files for {len(missing)} of {len(partitions)} "
                    f"partition(s) ({keys}) {waited}; expected "
                    f"{courier.pattern!r} in storage {courier.storage!r}",
                )  # fmt: skip
            result = self._call_run(ctx, plan, window, record, trigger, alerts)
            result["partitions"] = [iso_utc(p.start) for p in partitions]
            result["missing_partitions"] = [iso_utc(p.start) for p in missing]
            if missing_alert is not None:
                missing_alert.run_id = result["run_id"]
            if result["status"] == "failed":
                if missing_alert is not None:
                    missing_alert.details["run_error"] = result["error"]
                else:
                    self._alert(
                        alerts, "failed", plan, window, record, result["run_id"],
                        f"courier {plan.courier} failed: {result['error']}",
                    )  # fmt: skip
            return result
        finally:
            self.release(scope)

    def _wait_for_files(
        self,
        ctx: Context,
        plan: MemberPlan,
        window: Window,
        partitions: list[Partition],
        trigger: str = "scheduled",
    ) -> list[Partition]:
        """Poll until every partition of the window has a file or the wait is over; return
        the partitions still without files. A manual run (`group run --at T`) waits only
        until T + wait: for a time long past there is nothing left to wait for."""
        courier = ctx.project.courier(plan.courier)
        seconds = plan.wait.total_seconds() if self.wait else 0.0
        if trigger == "manual":
            seconds = max(0.0, min(seconds, (plan.at + plan.wait - self.now()).total_seconds()))
        deadline = self.clock() + seconds
        said = False
        while True:
            self._check_stop()
            try:
                found = {f.partition for f in ctx.discover(courier, window, tz=plan.file_zone)}
            except CourierError as exc:  # the run itself reports an unreachable storage
                log.warning("courier %s: listing failed while waiting: %s", plan.courier, exc)
                found = set()
            missing = [p for p in partitions if p.start not in found]
            left = deadline - self.clock()
            if not missing or left <= 0:
                return missing
            if not said:  # once, also without a terminal: what it waits for, and until when
                said = True
                until = iso_utc(self.now() + timedelta(seconds=left))
                first = FilePattern.parse(courier.pattern).render(
                    missing[0].start.astimezone(plan.file_zone).replace(tzinfo=None)
                )
                ctx.console.warn(
                    f"{plan.courier}: waiting until {until} (wait = {plan.member.wait} after "
                    f"{iso_utc(plan.at)}) for files of {len(missing)} partition(s), first "
                    f"{first!r} in storage {courier.storage!r}; --no-wait runs without them"
                )
            log.info(
                "courier %s: waiting for %d partition(s), %.0fs left",
                plan.courier,
                len(missing),
                left,
            )
            ctx.console.status(
                f"{plan.courier}: waiting for files of {len(missing)} partition(s), "
                f"{left:.0f}s left"
            )
            self.sleep(min(self.poll_seconds, left))

    def _call_run(
        self,
        ctx: Context,
        plan: MemberPlan,
        window: Window,
        record: dict[str, Any],
        trigger: str,
        alerts: list[Alert],
    ) -> dict[str, Any]:
        courier = ctx.project.courier(plan.courier)
        locks = [self._feed_lock(f) for f in sorted(courier.load_operations)]
        timer = None
        fired: list[Alert] = []
        if plan.alert_after is not None:
            limit = plan.alert_after
            started = time.monotonic()

            def overlong() -> None:
                alert = self._alert(
                    alerts, "overlong", plan, window, record, None,
                    f"courier {plan.courier} has been running for over {plan.member.alert_after}",
                    {"alert_after_s": limit.total_seconds(),
                     "running_s": round(time.monotonic() - started, 3)},
                )  # fmt: skip
                fired.append(alert)

            timer = threading.Timer(limit.total_seconds(), overlong)
            timer.daemon = True

        def attempt() -> dict[str, Any]:
            self._check_stop()
            log.info("courier %s: running window %s", plan.courier, window.as_dict())
            options = member_options(
                self.project, plan, trigger=trigger, now=self.now(),
                group=(plan.group, record["group_run_id"]),
            )  # fmt: skip
            with ctx.hold():
                return ctx.run(plan.courier, window, options=options)

        until = self._deadline()
        for lock in locks:
            lock.acquire()
        try:
            if timer is not None:
                timer.start()
            result = retry_transient(
                attempt, until=until, clock=self.clock, sleep=self.sleep,
                on_retry=lambda exc: log.info("courier %s: %s", plan.courier, exc),
            )  # fmt: skip
            if timer is not None:
                timer.cancel()
                timer.join()  # an alert being sent finishes first
            for alert in fired:
                alert.run_id = result["run_id"]
            return result
        finally:
            if timer is not None:
                timer.cancel()
            for lock in reversed(locks):
                lock.release()

    def _alert(
        self,
        alerts: list[Alert],
        kind: Any,
        plan: MemberPlan,
        window: Window | None,
        record: dict[str, Any],
        run_id: str | None,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> Alert:
        alert = Alert(
            kind=kind,
            message=f"group {plan.group}: {message}",
            courier=plan.courier,
            group=plan.group,
            group_run_id=record["group_run_id"],
            run_id=run_id,
            window=window,
            details={"scheduled_at": record["scheduled_at"], **(details or {})},
        )
        self.alerter.fire(alert)
        alerts.append(alert)
        return alert

    # -- recovery ------------------------------------------------------------------------------
    def mark_interrupted(self) -> int:
        """Group runs left 'running' by a process that died become 'interrupted'."""
        now = self.now()

        def mark(state: StateStore) -> int:
            n = 0
            for run in state.group_runs(None, 200):
                if run.status == "running" and not holder_alive(run.host, run.pid, now):
                    state.finish_group_run(replace(run, status="interrupted"))
                    n += 1
            return n

        return int(self.with_state(mark))


def synthetic(
    plan: MemberPlan, window: Window | None, status: str, note: str | None
) -> dict[str, Any]:
    """An outcome for a courier window that did not reach Context.run."""
    return {
        "run_id": None,
        "courier": plan.courier,
        "status": status,
        "group": plan.group,
        "window": window.as_dict() if window else None,
        "files": {"found": 0, "loaded": 0, "skipped": 0},
        "bytes": 0,
        "feeds": {},
        "quarantined": 0,
        "duration_s": 0.0,
        "error": None,
        "note": note,
    }


def member_entry(outcome: dict[str, Any]) -> dict[str, Any]:
    return {
        "courier": outcome["courier"],
        "window": outcome.get("window"),
        "status": outcome["status"],
        "run_id": outcome.get("run_id"),
        "retry": outcome.get("retry", False),
    }


def group_status(outcomes: list[dict[str, Any]], stopped: bool = False) -> str:
    statuses = [o["status"] for o in outcomes]
    if stopped and "abandoned" in statuses:
        return "abandoned"
    ran = [s for s in statuses if s not in ("skipped", "held")]
    failed = [s for s in ran if s in ("failed", "abandoned")]
    if not failed:
        return "succeeded"
    return "failed" if len(failed) == len(ran) else "partially_failed"
