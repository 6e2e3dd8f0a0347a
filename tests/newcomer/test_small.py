"""The small things that cost a newcomer time (issue 18, item 5), each through the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

from tests.newcomer.helpers import courier
from tests.projects import ProjectFactory, event
from tests.scheduling.conftest import CLICKS_COURIER, CLICKS_FEED

REPO = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 22)


def test_date_errors_name_the_accepted_formats(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    for bad, reason in (
        ("2026-13-01", " (month must be in 1..12)"),
        ("2026-11-2", " (not YYYY-MM-DD)"),
        ("22.11.2026", ""),
    ):
        proc = courier(p, "files", "events", "--date", bad)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert f"cannot read date {bad!r}{reason}; accepted: YYYY-MM-DD" in proc.stderr
    proc = courier(p, "files", "events", "--hour", "2026-11-22 7h")
    assert proc.returncode == 1 and "use 2026-11-22, 2026-11-22T06, 2026-11-22T06:00" in proc.stderr


def test_an_hour_that_contradicts_the_date_is_refused(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 7, [event(1)])
    wrong = courier(p, "files", "events", "--date", "2026-11-22", "--hour", "2026-11-23T07")
    assert wrong.returncode == 1
    assert "--hour 2026-11-23T07 is not on --date 2026-11-22" in wrong.stderr
    for hour in ("07", "2026-11-22T07"):
        same = courier(p, "files", "events", "--date", "2026-11-22", "--hour", hour, "--json")
        assert same.returncode == 0, same.stderr
        assert json.loads(same.stdout)["window"]["start"] == "2026-11-22T07:00:00Z"
    both = courier(p, "files", "events", "--date", "2026-11-22", "--start", "2026-11-22")
    assert both.returncode == 1 and "not both" in both.stderr


def clicks_group(p: ProjectFactory, wait: str) -> None:
    p.feed("clicks", CLICKS_FEED).courier("clicks", CLICKS_COURIER)
    p.write(
        "config/groups/hourly.toml",
        f'schedule = "0 * * * *"\n[[couriers]]\nname = "clicks"\noffset = "1h"\n'
        f'wait = "{wait}"\nrequired = false\n',
    )


def test_group_run_at_a_past_time_does_not_wait_again(make_project: ProjectFactory) -> None:
    p = make_project
    clicks_group(p, "2h")
    started = time.monotonic()
    proc = courier(p, "group", "run", "hourly", "--at", "2026-11-23T10:00", "--json")
    assert time.monotonic() - started < 60  # the 2h wait ended at 12:00 that day
    assert proc.returncode == 0, proc.stderr
    assert "waiting" not in proc.stderr


def test_group_run_says_what_it_waits_for(make_project: ProjectFactory) -> None:
    p = make_project
    now = datetime.now(UTC)
    at = now.replace(minute=0, second=0, microsecond=0)  # this hour's fire time
    # a wait that ends 10 minutes from now: the message is read as it comes, then the waiting
    # run is stopped (a wait that ends makes the run go on: the test above)
    wait = int((now - at).total_seconds()) + 600
    clicks_group(p, f"{wait}s")
    proc = subprocess.Popen(
        [sys.executable, "-m", "courier", "--project", str(p.root), "group", "run", "hourly",
         "--at", at.isoformat(), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stderr or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    try:
        while not any("waiting until" in line for line in said) and proc.poll() is None:
            assert time.monotonic() < deadline, "".join(said)
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    reader.join(timeout=30)
    message = next((line for line in said if "clicks: waiting until " in line), "")
    assert message, "".join(said)
    assert f"(wait = {wait}s after {at.strftime('%Y-%m-%dT%H:%M:%SZ')})" in message
    assert re.search(
        r"first 'clicks/\d{4}/\d\d/\d\d/\d\d/\*\.ndjson' in storage 'landing'", message
    )


def test_an_unset_variable_in_a_source_header_is_named(make_project: ProjectFactory) -> None:
    p = make_project
    p.write(
        "config/streams/events.toml",
        'payload = "json"\n[auth]\nalgorithm = "HS256"\nsecret = "${COURIER_JWT_SECRET}"\n',
    )
    p.write(
        "config/sources/api.toml",
        'type = "http_poll"\nstream = "events"\nurl = "http://127.0.0.1:9/events"\n'
        'records = "/data"\n[headers]\nAuthorization = "Bearer ${NEWCOMER_API_TOKEN}"\n',
    )
    env = {k: v for k, v in os.environ.items() if k != "NEWCOMER_API_TOKEN"}
    env["COURIER_JWT_SECRET"] = "newcomer-secret-0123456789abcdef0123"
    started = time.monotonic()
    proc = courier(p, "poll", "api", "--once", env=env)
    assert proc.returncode == 1 and time.monotonic() - started < 60  # no retries
    assert "headers.Authorization uses ${NEWCOMER_API_TOKEN}" in proc.stderr
    assert "export NEWCOMER_API_TOKEN" in proc.stderr and "Illegal header" not in proc.stderr


def test_feeds_infer_out_dash_prints_and_writes_nothing(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    (p.root / "feeds" / "order_items.toml").unlink()
    p.land_hour(DAY, 3, [event(1), event(2)])
    proc = courier(p, "feeds", "infer", "events", "--date", "2026-11-22", "--out", "-")
    assert proc.returncode == 0, proc.stderr
    assert "[fields]" in proc.stdout and "event_id" in proc.stdout
    assert tomllib.loads(proc.stdout)["fields"]["event_id"] == "string"
    assert not (p.root / "feeds" / "order_items.toml").exists()


def test_a_payload_missing_a_subfield_is_no_type_change(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 3, [event(1, email="a@example.com")])
    assert courier(p, "run", "events", "--date", "2026-11-22").returncode == 0
    later = event(2)
    later["customer"] = {"id": 2}  # no email this time
    p.land_hour(DAY, 4, [later])
    proc = courier(p, "run", "events", "--date", "2026-11-22", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert not any("changed type" in c for c in result["schema_changes"]), result
    assert "changed type" not in proc.stderr


def test_the_licence_is_an_spdx_string() -> None:
    """setuptools warns that `project.license` as a table is deprecated; a string is not."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]


def test_preview_and_infer_on_an_empty_window_name_the_tag(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    for args in (("query", "preview", "order_items"), ("feeds", "infer", "events")):
        proc = courier(p, *args, "--date", "2026-11-20")
        assert proc.returncode == 1 and "Binder Error" not in proc.stderr
        assert "no files in the window [2026-11-20T00:00:00Z, 2026-11-21T00:00:00Z) for tag " in (
            proc.stderr
        )
        assert "prefix 'events/2026/11/20/00/'" in proc.stderr


def test_reload_dry_run_says_what_would_load(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 3, [event(1)])
    assert courier(p, "run", "events", "--date", "2026-11-22").returncode == 0
    plain = courier(p, "run", "events", "--date", "2026-11-22", "--dry-run")
    assert "would load 0 file(s)" in plain.stdout and "already loaded, skipped" in plain.stdout
    again = courier(p, "run", "events", "--date", "2026-11-22", "--reload", "--dry-run")
    assert "would load 1 file(s)" in again.stdout and "again because of --reload" in again.stdout
    assert "would load again" in again.stdout
    # nothing was read by a dry run: no "0 loaded, 0 already loaded" beside "loaded before"
    assert "  files: 1 found, 1 loaded before\n" in again.stdout
    assert "already loaded;" not in again.stdout


def test_runs_filtered_by_status(make_project: ProjectFactory) -> None:
    """The README's `runs show` picks the newest succeeded run: `runs --status succeeded`."""
    p = make_project.events_project()
    p.land_hour(DAY, 3, [event(1)])
    assert courier(p, "run", "events", "--date", "2026-11-22").returncode == 0
    assert courier(p, "run", "events", "--date", "2026-11-22").returncode == 0  # skipped
    listed = json.loads(courier(p, "runs", "--json").stdout)
    assert [r["status"] for r in listed] == ["skipped", "succeeded"]
    done = json.loads(courier(p, "runs", "--courier", "events", "--status", "succeeded",
                              "--json").stdout)  # fmt: skip
    assert [r["run_id"] for r in done] == [listed[1]["run_id"]]
    none = courier(p, "runs", "--courier", "events", "--status", "failed")
    assert none.returncode == 0 and none.stdout.strip() == "no failed runs of courier events"
    bad = courier(p, "runs", "--status", "ok")
    assert bad.returncode == 2 and "'ok' is not one of" in bad.stderr
