"""`courier run` as a user runs it (a real subprocess) when the feed database is held by an
analyst's DuckDB session, and for a window in the future."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.cli.test_cli import courier
from tests.projects import EVENTS_COURIER, ProjectFactory, event

DAY = date(2026, 11, 22)

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS analyst_notes (x INTEGER)")
print("holding", flush=True)
sys.stdin.read()  # until the test closes stdin
"""


@pytest.fixture
def analyst_session(make_project: ProjectFactory) -> Iterator[subprocess.Popen[str]]:
    """Another process with the feed database open, as `duckdb feeds.duckdb` would have it."""
    database = make_project.root / ".courier" / "feeds.duckdb"
    database.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=60)


def with_lock_timeout(p: ProjectFactory, seconds: float) -> ProjectFactory:
    p.write(
        "config/courier.toml",
        f'[project]\ntime_zone = "UTC"\n\n[feeds]\nlock_timeout = {seconds}\n',
    )
    return p


def test_a_held_feed_database_fails_the_run_after_lock_timeout_naming_the_holder(
    make_project: ProjectFactory, analyst_session: subprocess.Popen[str]
) -> None:
    p = with_lock_timeout(make_project.events_project(), 2)
    p.land_hour(DAY, 0, [event(1)])
    started = time.monotonic()
    done = courier(p, "run", "events", "--date", "2026-11-22", "--json")
    waited = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)  # the usual --json failure shape
    assert result["status"] == "failed" and result["courier"] == "events"
    assert result["window"]["start"].startswith("2026-11-22")
    assert {"run_id", "files", "feeds", "error", "warnings"} <= set(result)
    error = result["error"]
    assert f"pid {analyst_session.pid}" in error, error
    assert "open DuckDB session" in error and "lock_timeout" in error, error
    assert "another courier process" not in error
    assert waited >= 2  # it waited for the lock before giving up
    # without --json: the same message, on stderr
    plain = courier(p, "run", "events", "--date", "2026-11-22")
    assert plain.returncode == 1 and f"pid {analyst_session.pid}" in plain.stderr


def test_the_run_goes_ahead_once_the_session_closes_within_lock_timeout(
    make_project: ProjectFactory, analyst_session: subprocess.Popen[str]
) -> None:
    p = with_lock_timeout(make_project.events_project(), 120)
    p.land_hour(DAY, 0, [event(1)])
    run = subprocess.Popen(
        [sys.executable, "-m", "courier", "--project", str(p.root), "run", "events", "--date",
         "2026-11-22", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert analyst_session.stdin is not None
        analyst_session.stdin.close()  # the analyst closes the session while the run waits
        out, err = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert json.loads(out)["status"] == "succeeded"


def test_a_manual_run_of_a_window_in_the_future_loads_nothing_unless_forced(
    make_project: ProjectFactory,
) -> None:
    p = make_project.events_project()
    p.courier(
        "events", EVENTS_COURIER.replace("[load_operations]", 'lookback = "7d"\n[load_operations]')
    )
    today = datetime.now(UTC).date()
    tomorrow, later = today + timedelta(days=1), today + timedelta(days=30)
    for day in (today - timedelta(days=1), tomorrow, later):
        p.land(f"events/{day:%Y/%m/%d}/00/part-test-000000.ndjson", [event(day.day)])
    for day in (tomorrow, later):
        done = courier(p, "run", "events", "--date", day.isoformat(), "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == "skipped" and result["files"]["loaded"] == 0
        assert any("--force" in w and "future" in w for w in result["warnings"]), result
    # nothing loaded, not even the lookback's never-loaded files before the window
    assert p.sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'order_items'"
    ) == [(0,)]
    assert [r[0] for r in p.sql("SELECT status FROM courier.runs")] == ["skipped", "skipped"]
    forced = courier(p, "run", "events", "--date", tomorrow.isoformat(), "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["status"] == "succeeded"
    assert (f"e{tomorrow.day}",) in p.sql("SELECT DISTINCT event_id FROM order_items")
