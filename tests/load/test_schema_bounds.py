"""The pinned schema: a nested field it knows loads as NULL when a window lacks it, and one
record cannot grow it past options.max_columns."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import duckdb
import pytest

from tests.projects import EVENTS_COURIER, EVENTS_QUERY, ProjectFactory, event

DAY = date(2026, 11, 22)
NEXT = date(2026, 11, 21)
QUERY_WITH_EMAIL = EVENTS_QUERY.replace(
    "AS customer_id,", "AS customer_id, e.customer.email AS customer_email,"
)


def without_email(i: int) -> dict[str, Any]:
    record = event(i)
    del record["customer"]["email"]
    return record


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "held"])
def test_a_nested_field_the_pinned_schema_knows_loads_as_null_when_no_record_has_it(
    make_project: ProjectFactory, streamed: bool
) -> None:
    p = make_project.events_project()
    p.query("order_items", QUERY_WITH_EMAIL)
    p.feed(
        "order_items",
        (p.root / "feeds" / "order_items.toml").read_text() + 'customer_email = "string"\n',
    )
    if not streamed:
        p.courier(
            "events",
            EVENTS_COURIER.replace(
                "max_bad_records = 10", 'max_bad_records = 10, schema_scan = "full"'
            ),
        )
    p.land_hour(NEXT, 0, [event(1)])
    assert p.run(day=NEXT.isoformat())["status"] == "succeeded"  # pins customer.email
    p.land_hour(DAY, 0, [without_email(2), without_email(3)])
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    rows = p.sql("SELECT DISTINCT event_id, customer_email FROM order_items ORDER BY 1")
    assert rows == [("e1", "c1@x.test"), ("e2", None), ("e3", None)]
    assert result["schema_changes"] == []  # the pinned field is kept, not dropped


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "held"])
def test_a_first_run_loads_null_for_a_nested_field_only_the_feed_knows(
    make_project: ProjectFactory, streamed: bool
) -> None:
    """No pinned schema yet (the courier's first run) and no record carries customer.email:
    the feed declares customer_email, so it loads as NULL; a nested field the feed does not
    declare is still the query's error, naming the query file."""
    p = make_project.events_project()
    p.query("order_items", QUERY_WITH_EMAIL)
    feed = (p.root / "feeds" / "order_items.toml").read_text()
    p.feed("order_items", feed + 'customer_email = "string"\n')
    if not streamed:
        p.courier(
            "events",
            EVENTS_COURIER.replace(
                "max_bad_records = 10", 'max_bad_records = 10, schema_scan = "full"'
            ),
        )
    p.land_hour(DAY, 0, [without_email(2), without_email(3)])
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    rows = p.sql(
        "SELECT DISTINCT event_id, customer_id, customer_email FROM order_items ORDER BY 1"
    )
    assert rows == [("e2", 1, None), ("e3", 1, None)]
    # a typo'd field the feed does not know: the run fails and says where
    p.query("order_items", QUERY_WITH_EMAIL.replace("e.customer.email", "e.customer.emial"))
    p.land_hour(NEXT, 0, [without_email(4)])
    failed = p.run(day=NEXT.isoformat())
    assert failed["status"] == "failed"
    assert "emial" in failed["error"] and "order_items" in failed["error"], failed["error"]


def wide_record(i: int, keys: int) -> dict[str, Any]:
    return {**event(i), **{f"junk_{k}": k for k in range(keys)}}


def pinned_columns(p: ProjectFactory) -> dict[str, str]:
    (row,) = p.sql("SELECT columns FROM courier.schemas WHERE courier = 'events'")
    return dict(json.loads(row[0]))


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "held"])
def test_one_record_with_thousands_of_keys_is_quarantined_not_pinned(
    make_project: ProjectFactory, streamed: bool
) -> None:
    p = make_project.events_project()
    if not streamed:
        p.courier(
            "events",
            EVENTS_COURIER.replace(
                "max_bad_records = 10", 'max_bad_records = 10, schema_scan = "full"'
            ),
        )
    p.land_hour(DAY, 0, [event(1), wide_record(2, 3000), event(3), {**event(4), "extra": 1}])
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    assert p.sql("SELECT DISTINCT event_id FROM order_items ORDER BY 1") == [
        ("e1",),
        ("e3",),
        ("e4",),
    ]
    (q,) = p.sql("SELECT line, reason FROM courier.quarantine")
    assert q[0] == 2 and "options.max_columns = 500" in q[1], q
    pinned = pinned_columns(p)
    assert len(pinned) <= 500 and "extra" in pinned and "junk_0" not in pinned


def test_max_columns_is_an_option_and_bounds_the_pinned_schema(
    make_project: ProjectFactory,
) -> None:
    p = make_project.events_project()
    courier = EVENTS_COURIER.replace(
        "max_bad_records = 10", "max_bad_records = 10, max_columns = 20"
    )
    p.courier("events", courier)
    # the event's 3 columns + 12 keys fit in 20; the next record's 22 more do not
    p.land_hour(NEXT, 0, [wide_record(1, 12), wide_record(2, 22), event(3)])
    result = p.run(day=NEXT.isoformat())
    assert result["status"] == "succeeded", result["error"]
    assert result["quarantined"] == 1
    assert len(pinned_columns(p)) == 15
    # a schema pinned before the bound existed (thousands of columns) is not kept
    p.land_hour(DAY, 0, [event(4)])
    oversized = {**pinned_columns(p), **{f"old_{k}": "BIGINT" for k in range(3000)}}
    con = duckdb.connect(str(p.root / ".courier" / "feeds.duckdb"))
    try:
        con.execute("UPDATE courier.schemas SET columns = ?", [json.dumps(oversized)])
    finally:
        con.close()
    assert p.run()["status"] == "succeeded"
    assert len(pinned_columns(p)) <= 20
