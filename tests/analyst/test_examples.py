"""The four real payload examples load end to end: samples landed as the ingest API would,
each courier run into its feeds with nothing rejected."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from courier.analyst.samples import land_samples, sample_couriers
from courier.context import Context
from courier.validate import load_project

REPO = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 22)
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

EXPECTED = {
    "activity_events": {"activity": 5},
    "event_batches": {"customer_events": 5},
    "metrics": {"measurements": 5},
    "session_events": {"session_events": 6, "sessions": 3},
}


@pytest.mark.slow
def test_examples_land_and_load(tmp_path: Path) -> None:
    root = tmp_path / "project"
    for folder in ("config", "feeds", "queries", "samples"):
        shutil.copytree(REPO / folder, root / folder)
    project = load_project(root)
    context = Context(project)
    landed = land_samples(project, context.storage("landing"), DAY)
    assert landed == {"activity-events": 5, "event-batches": 3, "metrics": 5, "session-events": 6}
    assert set(EXPECTED) <= set(sample_couriers(project))
    for name, feeds in EXPECTED.items():
        window = context.window(project.courier(name), date=DAY.isoformat())
        result = context.run(name, window, NOW)
        assert result["status"] == "succeeded", (name, result["error"])
        assert {f: c["loaded"] for f, c in result["feeds"].items()} == feeds, name
        assert all(c["rejected"] == 0 for c in result["feeds"].values())
        assert context.run(name, window, NOW)["status"] == "skipped"
    con = duckdb.connect(str(root / ".courier" / "feeds.duckdb"), read_only=True)
    try:
        durations = con.execute(
            "SELECT session_id, duration_s FROM sessions WHERE duration_s IS NOT NULL"
        ).fetchall()
        assert durations == [("s-100", 1200.0)]
        amount = con.execute(
            "SELECT attributes->>'$.amount' FROM customer_events WHERE customer_id = 'C-1001'"
        ).fetchone()
        assert amount == ("129.9",)
        tenants = con.execute(
            "SELECT count(*) FILTER (WHERE client_id IS NULL), count(*) FROM activity"
        ).fetchone()
        assert tenants == (2, 5)
    finally:
        con.close()
