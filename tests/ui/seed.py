"""A project with seeded runs for the status page, made by real runs over landed files:
events succeeded with two quarantined lines (one holding <script>) and then skipped; clicks
succeeded for one hour and failed the next (too many bad lines); `idle` never ran; an alert;
two landed parts of stream `web`. Times are relative to the real clock, so the charts' last
48 hours hold the runs."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from courier.alerts import Alert
from courier.context import Context
from courier.windows import Window
from tests.ingest.helpers import HS_AUTH
from tests.projects import ProjectFactory
from tests.scheduling.conftest import CLICKS_COURIER, CLICKS_FEED, group

HOSTILE = "<script>alert('x')</script>"
ZONE = ZoneInfo("Europe/Berlin")
JWT_SECRET = "status-page-test-secret-0123456789abcdef"


def seeded_project(root: Path) -> ProjectFactory:
    now = datetime.now(UTC).replace(microsecond=0)
    p = ProjectFactory(root).events_project()
    p.write("config/courier.toml", '[project]\ntime_zone = "Europe/Berlin"\n')
    p.feed("clicks", CLICKS_FEED)
    p.courier(
        "clicks",
        CLICKS_COURIER.replace(
            'file_tag = "clicks"', 'file_tag = "clicks"\noptions = { max_bad_records = 1 }'
        ),
    )
    p.courier("idle", CLICKS_COURIER.replace("'clicks/'", "'idle/'"))
    os.environ["COURIER_JWT_SECRET"] = JWT_SECRET
    p.write("config/streams/web.toml", 'payload = "json"\n' + HS_AUTH)
    group(p, "hourly", 'schedule = "0 * * * *"\n[[couriers]]\nname = "clicks"\n')
    ctx = p.context()
    # events: yesterday (local) with 2 good and 2 bad lines, then a rerun with nothing new
    yesterday = (now.astimezone(ZONE) - timedelta(days=1)).date()
    good = [
        {"event_id": f"e{i}", "customer": {"id": i}, "items": [{"sku": "a", "qty": i, "price": 1}]}
        for i in (1, 2)
    ]
    lines = b"".join(orjson.dumps(r) + b"\n" for r in good) + HOSTILE.encode() + b"\n{bad\n"
    p.land_hour(yesterday, 0, lines)
    run(ctx, "events", now - timedelta(hours=3), date=yesterday.isoformat())
    run(ctx, "events", now - timedelta(hours=2), date=yesterday.isoformat())
    # clicks: one good hour, then an hour of bad lines
    ok_hour = (now - timedelta(hours=3)).astimezone(ZONE)
    bad_hour = (now - timedelta(hours=2)).astimezone(ZONE)
    p.land(
        f"clicks/{ok_hour:%Y/%m/%d/%H}/part-test-000000.ndjson",
        b"".join(orjson.dumps({"click_id": f"c{i}", "page": "/"}) + b"\n" for i in range(4)),
    )
    run(ctx, "clicks", now - timedelta(hours=2), hour=f"{ok_hour:%Y-%m-%dT%H}")
    p.land(
        f"clicks/{bad_hour:%Y/%m/%d/%H}/part-test-000000.ndjson",
        b"{bad\n{worse\n" + HOSTILE.encode() + b"\n",
    )
    failed = run(ctx, "clicks", now - timedelta(hours=1), hour=f"{bad_hour:%Y-%m-%dT%H}")
    assert failed["status"] == "failed", failed
    with ctx.workspace() as ws:
        alert = Alert(
            kind="failed",
            message=f"group hourly: courier clicks failed: {HOSTILE}",
            courier="clicks",
            group="hourly",
            run_id=failed["run_id"],
            window=Window(now - timedelta(hours=2), now - timedelta(hours=1)),
        )
        ws.state.record_alert(alert)
    # stream web: three payloads in two parts of the previous hour
    hour = now - timedelta(hours=1)
    p.land(f"web/{hour:%Y/%m/%d/%H}/part-a-000001.ndjson", b'{"a":1}\n{"a":2}\n')
    p.land(f"web/{hour:%Y/%m/%d/%H}/part-a-000002.ndjson", b'{"a":3}\n')
    return p


def run_record(row: dict[str, Any]) -> Any:
    """A courier.runs row as the state store's start_run takes it (a typed RunRecord)."""
    from courier.records import RunRecord

    return RunRecord.from_row(row)


def run(ctx: Context, courier: str, now: datetime, **window: Any) -> dict[str, Any]:
    w = ctx.window(ctx.project.courier(courier), **window)
    return ctx.run(courier, w, now)


def history_project(root: Path, couriers: int, runs: int) -> ProjectFactory:
    """`couriers` hourly couriers in 5 groups with `runs` runs recorded through the state store
    (a quarter failed, some skipped), spread over the last 20 days: the bench's and the paging
    test's history."""
    p = ProjectFactory(root)
    p.write("config/courier.toml", '[project]\ntime_zone = "Europe/Berlin"\n')
    p.feed("clicks", CLICKS_FEED)
    names = [f"courier_{i:03d}" for i in range(couriers)]
    for name in names:
        p.courier(name, CLICKS_COURIER.replace("'clicks/'", f"'{name}/'"))
    for g in range(5):
        members = "".join(f'[[couriers]]\nname = "{n}"\n' for n in names[g::5])
        group(p, f"group_{g}", f'schedule = "{g * 5} * * * *"\n{members}')
    ctx = p.context()
    now = datetime.now(UTC).replace(microsecond=0)
    step = timedelta(days=20) / max(1, runs)
    with ctx.workspace() as ws:
        ws.state.begin()  # one transaction: 10,000 inserts in seconds, not minutes
        for i in range(runs):
            name = names[i % couriers]
            started = now - step * (runs - i)
            status = "failed" if i % 4 == 3 else "skipped" if i % 7 == 5 else "succeeded"
            rows = 0 if status != "succeeded" else 100 + i % 50
            row = {
                "run_id": f"{started:%Y%m%dT%H%M%S}-{name}-{i:06d}",
                "courier": name,
                "status": status,
                "trigger": "scheduled",
                "group_name": f"group_{names.index(name) % 5}",
                "window_start": started - timedelta(hours=1),
                "window_end": started,
                "files_found": 1,
                "files_loaded": 1 if rows else 0,
                "files_skipped": 0,
                "bytes": 1000 + i,
                "rows_read": rows,
                "rows_loaded": rows,
                "rows_rejected": 0,
                "quarantined": 0,
                "feeds": {"clicks": {"read": rows, "loaded": rows, "rejected": 0}},
                "error": f"run {i} failed: {HOSTILE}" if status == "failed" else None,
                "reload": False,
                "started_at": started,
                "finished_at": started + timedelta(seconds=2 + i % 30),
                "duration_s": 2.0 + i % 30,
            }
            ws.state.start_run(run_record(row))
        ws.state.commit()
    return p
