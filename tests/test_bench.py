"""`make bench` plumbing on a tiny data set: the generator's shape, the contenders in their own
processes (timing, peak RSS, failures reported), and courier == the hand-written DuckDB upsert."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from bench.common import run_isolated
from bench.data import DUPLICATE_EVERY, ensure_dataset

pytestmark = pytest.mark.slow


def test_generated_events_have_the_example_shape(tmp_path: Path) -> None:
    ds = ensure_dataset(tmp_path / "data", 1, log=False)
    assert len(ds.files) == 24
    assert all("/web-events/2026/11/22/" in f for f in ds.files)
    lines = Path(ds.files[0]).read_bytes().splitlines()
    first = orjson.loads(lines[0])
    assert set(first) == {"event_id", "type", "occurred_at", "customer", "items", "context"}
    assert set(first["customer"]) == {"id", "email", "tier"}
    assert set(first["items"][0]) == {"sku", "qty", "price"}
    assert sum(len(Path(f).read_bytes().splitlines()) for f in ds.files) == ds.events
    assert 900_000 < ds.bytes < 1_100_000
    ids = [orjson.loads(line)["event_id"] for line in lines]
    assert len(ids) - len(set(ids)) == (len(ids) - 1) // DUPLICATE_EVERY  # client retries
    # a second call reuses the files
    again = ensure_dataset(tmp_path / "data", 1, log=False)
    assert again == ds


def test_courier_and_hand_duckdb_load_the_same_rows(tmp_path: Path) -> None:
    ds = ensure_dataset(tmp_path / "data", 1, log=False)
    courier = run_isolated(
        "courier", "bench.run:courier_load", {"project": str(ds.project), "day": ds.day}
    )
    hand = run_isolated(
        "duckdb-upsert",
        "bench.run:hand_duckdb",
        {"files": ds.files, "db": str(tmp_path / "hand.duckdb"), "nbytes": ds.bytes},
    )
    plain = run_isolated(
        "duckdb-insert",
        "bench.run:hand_duckdb",
        {"files": ds.files, "db": str(tmp_path / "p.duckdb"), "nbytes": ds.bytes, "upsert": False},
    )
    for m in (courier, hand, plain):
        assert m.ok, m.error
        assert m.records == ds.events and m.bytes == ds.bytes
        assert m.seconds > 0 and m.cpu_seconds > 0
        assert 20e6 < m.peak_rss < 1.5e9
    assert courier.detail["checksum"] == hand.detail["checksum"]
    assert courier.detail["rows"] == hand.detail["rows"] < plain.detail["rows"] == ds.item_rows
    assert courier.detail["feed"]["read"] == ds.item_rows
    # the one query streams the tag from the files: no copy of the window in a table
    phases = set(courier.detail["phases"])
    assert {"read files + run the saved query", "insert into the feed"} <= phases
    assert "read files into the tag table" not in phases


def test_a_failing_contender_is_reported_not_raised(tmp_path: Path) -> None:
    m = run_isolated(
        "broken", "bench.run:hand_duckdb", {"files": [str(tmp_path / "missing.ndjson")],
                                            "db": str(tmp_path / "x.duckdb"), "nbytes": 0},
    )  # fmt: skip
    assert not m.ok and "missing.ndjson" in (m.error or "")
    assert m.records_per_s == 0.0
    json.dumps(m.detail)  # the report stays printable
