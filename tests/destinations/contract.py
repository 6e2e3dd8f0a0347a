"""The feed-destination contract: every FeedDestination passes these tests.

Subclass `DestinationContract` in a `Test*` class and provide a `destination` fixture that
yields a factory: each call opens the same, initially empty destination again (as a new run's
workspace would), and everything is closed afterwards. Rows arrive as Arrow (ArrowRows), the
way any engine hands them over; rejected rows go to a QuarantineLog double.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from courier.config.models import FeedConfig
from courier.destinations.base import FeedDestination, LoadContext
from courier.engines.base import ArrowRows, WindowFile
from courier.plan import BadRecord
from courier.state.base import QuarantineLog

Open = Callable[[], FeedDestination]
AT = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)

ORDERS = FeedConfig(
    id="orders",
    fields={
        "order_id": "string",
        "qty": "int",
        "total": "decimal(12,2)",
        "placed_at": "timestamp",
        "day": "date",
        "paid": "boolean",
        "extra": "json",
    },
    primary_key=["order_id"],
)
EVENTS = FeedConfig(id="events", fields={"name": "string", "n": "bigint"})


class ListQuarantine(QuarantineLog):
    """Rejected rows, kept in a list."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def quarantine(self, run_id: str, courier: str, feed: str | None, bad: list[BadRecord]) -> None:
        self.rows += [{"run_id": run_id, "feed": feed, **b.__dict__} for b in bad]

    def quarantine_arrow(self, run_id: str, courier: str, feed: str, rows: pa.Table) -> None:
        self.rows += [{"run_id": run_id, "feed": feed, **r} for r in rows.to_pylist()]

    def quarantined(
        self, courier: str | None = None, run_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        return [r for r in self.rows if run_id in (None, r["run_id"])][:limit]

    def export_quarantine(self, run_id: str, path: Path) -> None:
        raise NotImplementedError


FILES = [WindowFile(f"file:///landing/p{i}.ndjson", f"landing/p{i}.ndjson", 10, i) for i in (0, 1)]


def orders(*records: dict[str, Any], ranks: list[int] | None = None) -> ArrowRows:
    """Order rows as an engine would hand them over: every value as text, as read."""
    names = ["order_id", "qty", "total", "placed_at", "day", "paid", "extra"]
    table = pa.table({n: pa.array([r.get(n) for r in records], pa.string()) for n in names})
    return ArrowRows(table, ranks=ranks or [0] * len(records), files=FILES)


def order(order_id: str, qty: str = "1", total: str = "9.99", **kw: str) -> dict[str, Any]:
    return {
        "order_id": order_id, "qty": qty, "total": total, "placed_at": "2026-11-22T06:00:00Z",
        "day": "2026-11-22", "paid": "true", "extra": '{"a": 1}', **kw,
    }  # fmt: skip


def ctx(run_id: str, quarantine: QuarantineLog | None = None) -> LoadContext:
    return LoadContext(run_id, "shop", AT, quarantine)


def load(
    open_: Open, run_id: str, feed: FeedConfig, rows: Any, mode: str = "load", q: Any = None
) -> Any:
    d = open_()
    d.begin(ctx(run_id, q or ListQuarantine()))
    d.ensure_table(feed)
    result = d.load(feed, rows, mode)  # type: ignore[arg-type]
    d.commit(run_id)
    return result


def by_id(d: FeedDestination, feed: str = "orders") -> dict[str, dict[str, Any]]:
    return {r["order_id"]: r for r in d.sample(feed, 1000)}  # type: ignore[misc]


class DestinationContract:
    def test_a_committed_load_is_there_with_the_feed_types(self, destination: Open) -> None:
        result = load(destination, "r1", ORDERS, orders(order("a", "2", "10.5"), order("b")))
        assert (result.counts.read, result.counts.loaded, result.counts.rejected) == (2, 2, 0)
        d = destination()
        assert d.row_count("orders") == 2
        row = by_id(d)["a"]
        assert row["qty"] == 2 and row["total"] == Decimal("10.50") and row["paid"] is True
        assert row["placed_at"] == AT and row["day"] == date(2026, 11, 22)
        assert row["_courier_run_id"] == "r1"
        assert d.committed("r1") and not d.committed("r2")

    def test_an_unknown_feed_has_no_rows(self, destination: Open) -> None:
        assert destination().row_count("nothing") is None

    def test_abort_leaves_the_table_as_before(self, destination: Open) -> None:
        load(destination, "r1", ORDERS, orders(order("a")))
        d = destination()
        d.begin(ctx("r2"))
        d.ensure_table(ORDERS)
        d.load(ORDERS, orders(order("b"), order("a", "7")), "load")
        d.abort()
        again = destination()
        assert again.row_count("orders") == 1 and by_id(again)["a"]["qty"] == 1
        assert not again.committed("r2")

    def test_commit_is_idempotent_per_run(self, destination: Open) -> None:
        load(destination, "r1", EVENTS, ArrowRows(pa.table({"name": ["x"], "n": [1]})))
        d = destination()
        d.commit("r1")  # a recovery asking again: nothing happens
        assert d.committed("r1") and d.row_count("events") == 1

    def test_last_record_wins_by_file_rank_then_line(self, destination: Open) -> None:
        rows = orders(order("a", "3"), order("a", "1"), order("a", "2"), ranks=[1, 0, 0])
        result = load(destination, "r1", ORDERS, rows)
        assert result.counts.loaded == 1 and by_id(destination())["a"]["qty"] == 3

    def test_upsert_replaces_rows_loaded_before(self, destination: Open) -> None:
        load(destination, "r1", ORDERS, orders(order("a"), order("b")))
        result = load(destination, "r2", ORDERS, orders(order("b", "5"), order("c")))
        d = destination()
        assert result.counts.deleted == 1 and d.row_count("orders") == 3
        assert by_id(d)["b"]["qty"] == 5 and by_id(d)["b"]["_courier_run_id"] == "r2"

    def test_without_a_primary_key_rows_are_appended(self, destination: Open) -> None:
        rows = ArrowRows(pa.table({"name": ["x", "x"], "n": [1, 1]}))
        load(destination, "r1", EVENTS, rows)
        load(destination, "r2", EVENTS, rows)
        assert destination().row_count("events") == 4

    def test_truncate_and_load_replaces_the_table(self, destination: Open) -> None:
        load(destination, "r1", EVENTS, ArrowRows(pa.table({"name": ["x", "y"], "n": [1, 2]})))
        d = destination()
        d.begin(ctx("r2"))
        d.ensure_table(EVENTS)
        d.load(EVENTS, ArrowRows(pa.table({"name": ["z"], "n": [3]})), "truncateAndLoad")
        d.load(EVENTS, ArrowRows(pa.table({"name": ["w"], "n": [4]})), "load")
        d.commit("r2")
        names = sorted(r["name"] for r in destination().sample("events", 10))
        assert names == ["w", "z"]

    def test_rows_that_cannot_be_cast_go_to_quarantine_with_file_and_line(
        self, destination: Open
    ) -> None:
        q = ListQuarantine()
        rows = orders(order("a"), order("b", "lots"), order(None), ranks=[0, 1, 1])  # type: ignore[arg-type]
        result = load(destination, "r1", ORDERS, rows, q=q)
        assert (result.counts.loaded, result.counts.rejected) == (1, 2)
        assert destination().row_count("orders") == 1
        got = sorted((r["file"], r["line"], r["reason"]) for r in q.rows)
        assert got == [
            ("landing/p1.ndjson", 1, "qty: cannot cast lots to int"),
            ("landing/p1.ndjson", 2, "order_id: required field is null"),
        ]
        assert all(r["run_id"] == "r1" and r["feed"] == "orders" and r["raw"] for r in q.rows)

    def test_columns_not_in_the_feed_are_reported(self, destination: Open) -> None:
        rows = ArrowRows(pa.table({"name": ["x"], "n": [1], "colour": ["red"]}))
        result = load(destination, "r1", EVENTS, rows)
        assert result.ignored_columns == ["colour"] and result.counts.loaded == 1

    def test_a_new_field_adds_a_column(self, destination: Open) -> None:
        load(destination, "r1", EVENTS, ArrowRows(pa.table({"name": ["x"], "n": [1]})))
        wider = FeedConfig(id="events", fields={"name": "string", "n": "bigint", "tag": "string"})
        d = destination()
        d.begin(ctx("r2"))
        changes = d.ensure_table(wider)
        d.load(wider, ArrowRows(pa.table({"name": ["y"], "n": [2], "tag": ["t"]})))
        d.commit("r2")
        assert any("tag" in c for c in changes)
        tags = {r["name"]: r["tag"] for r in destination().sample("events", 10)}
        assert tags == {"x": None, "y": "t"}


@pytest.fixture
def quarantine() -> ListQuarantine:
    return ListQuarantine()
