"""`make bench` plumbing on a tiny data set: the generator's shape, the contenders in their own
processes (timing, peak RSS, failures reported), and courier == the hand-written DuckDB upsert."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from bench.common import Measurement, run_isolated
from bench.data import DUPLICATE_EVERY, LATE_KEY, ensure_dataset, ensure_late_window
from bench.run import split_reload

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


def test_courier_and_the_hand_written_anchors_load_the_same_rows(tmp_path: Path) -> None:
    ds = ensure_dataset(tmp_path / "data", 1, log=False)
    first = run_isolated(
        "courier-first-run",
        "bench.run:courier_load",
        {"project": str(ds.project), "day": ds.day, "reload": False},
    )
    assert first.ok, first.error
    assert "reload" not in first.detail and first.detail["schema_changes"] == []
    pinned = tmp_path / "pinned.json"
    pinned.write_text(json.dumps(first.detail["pinned"]))
    steady = run_isolated(
        "courier",
        "bench.run:courier_load",
        {"project": str(ds.project), "day": ds.day, "pinned": str(pinned)},
    )

    def hand(name: str, **kw: object) -> Measurement:
        args = {"files": ds.files, "db": str(tmp_path / f"{name}.duckdb"), "nbytes": ds.bytes}
        return run_isolated(name, "bench.run:hand_duckdb", {**args, **kw})

    columns = hand("duckdb-upsert-columns")
    auto = hand("duckdb-upsert", columns=False)
    plain = hand("duckdb-insert-columns", upsert=False)
    for m in (first, steady, columns, auto, plain):
        assert m.ok, m.error
        assert m.records == ds.events and m.bytes == ds.bytes
        assert m.seconds > 0 and m.cpu_seconds > 0
        assert 20e6 < m.peak_rss < 1.5e9
    # steady state: nothing new for the pinned schema; load and reload equal the columns anchor
    assert steady.detail["schema_changes"] == []
    again = split_reload(steady)
    assert again is not None and again.seconds > 0 and again.records == ds.events
    assert steady.detail["checksum"] == columns.detail["checksum"] == again.detail["checksum"]
    assert columns.detail["reload"]["checksum"] == columns.detail["checksum"]
    assert first.detail["checksum"] == auto.detail["checksum"] == columns.detail["checksum"]
    assert steady.detail["rows"] == auto.detail["rows"] < plain.detail["rows"] == ds.item_rows
    assert plain.detail["reload"]["rows"] == 2 * ds.item_rows  # the floor appends
    assert steady.detail["feed"]["read"] == ds.item_rows
    # the one query streams the tag from the files: no copy of the window in a table
    phases = set(steady.detail["phases"])
    assert {"read files + run the saved query", "insert into the feed"} <= phases
    assert "read files into the tag table" not in phases


def test_a_late_key_in_the_last_file_widens_the_pinned_schema(tmp_path: Path) -> None:
    ds = ensure_dataset(tmp_path / "data", 1, log=False)
    late = ensure_late_window(ds, tmp_path / "data")
    lines = Path(late.last_file).read_bytes().splitlines()
    assert LATE_KEY in orjson.loads(lines[-1])
    assert sum(LATE_KEY.encode() in line for line in lines) == 1
    pinned = tmp_path / "pinned.json"
    first = run_isolated(
        "courier-first-run",
        "bench.run:courier_load",
        {"project": str(ds.project), "day": ds.day, "reload": False},
    )
    pinned.write_text(json.dumps(first.detail["pinned"]))
    m = run_isolated(
        "courier-late-key",
        "bench.run:courier_load",
        {"project": str(late.project), "day": ds.day, "pinned": str(pinned), "reload": False},
    )
    assert m.ok, m.error
    assert m.records == ds.events + 1
    assert m.detail["schema_changes"] == [f"new field {LATE_KEY} (VARCHAR)"]
    assert LATE_KEY in m.detail["pinned"]


def test_a_failing_contender_is_reported_not_raised(tmp_path: Path) -> None:
    m = run_isolated(
        "broken", "bench.run:hand_duckdb", {"files": [str(tmp_path / "missing.ndjson")],
                                            "db": str(tmp_path / "x.duckdb"), "nbytes": 0},
    )  # fmt: skip
    assert not m.ok and "missing.ndjson" in (m.error or "")
    assert m.records_per_s == 0.0
    json.dumps(m.detail)  # the report stays printable


def holds(megabytes: int) -> dict[str, object]:
    """A contender (run by bench.common in its own process) that holds `megabytes` at once."""
    block = bytearray(megabytes * 2**20)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page: resident, not reserved
    return {"seconds": 0.0, "records": 1, "bytes": len(block)}


def test_peak_rss_is_the_contenders_own_not_the_bench_process_peak() -> None:
    ballast = bytearray(600 * 2**20)  # the bench's process once held more than the contender
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    del ballast
    small = run_isolated("small", "tests.test_bench:holds", {"megabytes": 1})
    big = run_isolated("big", "tests.test_bench:holds", {"megabytes": 300})
    assert small.ok and big.ok, (small.error, big.error)
    assert small.peak_rss < 200 * 2**20  # wait4's ru_maxrss would say >= 600 MB here
    assert 300 * 2**20 < big.peak_rss < 500 * 2**20
