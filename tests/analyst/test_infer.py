"""`courier feeds infer`: a feed drafted from the rows a load operation would load."""

from __future__ import annotations

import tomllib
from datetime import date

import pytest

from courier.analyst.infer import infer_feeds, write_feeds
from courier.analyst.preview import usable_project
from courier.config.models import FeedConfig
from courier.context import Context
from tests.analyst.helpers import courier
from tests.projects import EVENTS_COURIER, EVENTS_QUERY, NOW, ProjectFactory, event

DAY = date(2026, 11, 22)


def project_without_feed(p: ProjectFactory) -> ProjectFactory:
    """The events courier and query, the order_items feed not written yet."""
    p.query("order_items", EVENTS_QUERY)
    p.courier("events", EVENTS_COURIER)
    return p


@pytest.mark.slow
def test_infer_writes_a_valid_feed_that_loads(make_project: ProjectFactory) -> None:
    p = project_without_feed(make_project)
    p.land_hour(DAY, 0, [event(i, customer=i % 3, items=1 + i % 3) for i in range(6)])
    result = courier(p, "feeds", "infer", "events", "--date", "2026-11-22")
    assert result.returncode == 0, result.stderr
    assert "wrote feeds/order_items.toml" in result.stdout
    doc = tomllib.loads((p.root / "feeds/order_items.toml").read_text())
    assert doc["primary_key"] == ["event_id", "item_idx"]  # unique together, non-null
    assert doc["fields"] == {
        "event_id": "string",
        "item_idx": "bigint",
        "customer_id": "bigint",
        "sku": "string",
        "qty": "bigint",
        "price": "double",
    }
    assert set(doc["required"]) == {"customer_id", "sku", "qty", "price"}
    FeedConfig(id="order_items", **doc)
    # the drafted feed loads the window
    run = p.run(now=NOW)
    assert run["status"] == "succeeded", run["error"]
    assert run["feeds"]["order_items"] == {"read": 12, "loaded": 12, "rejected": 0}


def test_never_overwrites_without_force(make_project: ProjectFactory) -> None:
    p = project_without_feed(make_project)
    p.land_hour(DAY, 0, [event(1), event(2)])
    ctx = Context(usable_project(p.root))
    window = ctx.window(ctx.project.courier("events"), date="2026-11-22")
    write_feeds(infer_feeds(ctx, "events", window), False, "courier feeds infer events")
    feed = p.root / "feeds/order_items.toml"
    feed.write_text(feed.read_text() + "# reviewed by hand\n")
    again = courier(p, "feeds", "infer", "events", "--date", "2026-11-22")
    assert again.returncode == 1
    assert "order_items.toml already exist(s); pass --force" in again.stderr
    assert feed.read_text().endswith("# reviewed by hand\n")
    forced = courier(p, "feeds", "infer", "events", "--date", "2026-11-22", "--force")
    assert forced.returncode == 0 and "reviewed by hand" not in feed.read_text()


def test_types_keys_and_required_from_the_data(make_project: ProjectFactory) -> None:
    p = make_project
    p.courier(
        "things",
        """
        file_pattern = "'things/'yyyy/MM/dd'/*.ndjson'"
        file_tag = "things"
        [load_operations]
        things = [{ type = "load", file = "things" }]
        """,
    )
    records = [
        {
            "tenant": "t1" if i % 2 else "t2",
            "seq": i // 2,
            "seen": f"2026-11-22T10:00:{i:02d}Z",
            "day": "2026-11-22",
            "ts_ms": 1795341600000 + i,
            "ok": i % 3 == 0,
            "ratio": i / 7,
            "note": None if i == 3 else f"n{i}",
            "nested": {"a": i},
        }
        for i in range(8)
    ]
    p.land("things/2026/11/22/part.ndjson", records)
    ctx = Context(usable_project(p.root))
    (draft,) = infer_feeds(
        ctx, "things", ctx.window(ctx.project.courier("things"), date="2026-11-22")
    )
    assert draft.fields == {
        "tenant": "string",
        "seq": "bigint",
        "seen": "timestamp",
        "day": "date",
        "ts_ms": "timestamp",  # epoch milliseconds with a time-like name
        "ok": "boolean",
        "ratio": "double",
        "note": "string",
        "nested": "json",
    }
    # seq alone repeats; (tenant, seq) is the smallest unique set of non-null columns
    assert draft.primary_key == ["tenant", "seq"]
    assert "note" not in draft.required and "seen" in draft.required
    assert draft.comments["ts_ms"].startswith("epoch milliseconds")


def test_conflicting_types_are_reported_per_field(make_project: ProjectFactory) -> None:
    p = make_project
    p.courier(
        "mixed",
        """
        file_pattern = "'mixed/'yyyy/MM/dd'/*.ndjson'"
        file_tag = "mixed"
        [load_operations]
        readings = [{ type = "load", file = "mixed" }]
        """,
    )
    p.land(
        "mixed/2026/11/22/a.ndjson",
        [
            {"id": 1, "value": 3, "meta": {"unit": "c"}},
            {"id": 2, "value": "high", "meta": {"unit": 7}},
        ],
    )
    p.land("mixed/2026/11/22/b.ndjson", [{"id": 3, "value": {"x": 1}, "meta": {"unit": "c"}}])
    result = courier(p, "feeds", "infer", "mixed", "--date", "2026-11-22", "--json")
    assert result.returncode == 0, result.stderr
    (draft,) = __import__("json").loads(result.stdout)
    conflicts = " | ".join(draft["conflicts"])
    assert (
        "mixed field value: number in 1 record(s), object in 1 record(s), string in 1 record(s)"
        in conflicts
    )
    assert "column value: number in 1 row(s), object in 1 row(s), string in 1 row(s)" in conflicts
    assert "mixed field meta.unit: string in 2 record(s), number in 1 record(s)" in conflicts
    text = (p.root / "feeds/readings.toml").read_text()
    assert "# conflicting types: mixed field value:" in text


def test_no_load_operations_drafts_a_feed_for_the_input(make_project: ProjectFactory) -> None:
    p = make_project
    p.courier("raw", "file_pattern = \"'raw/'yyyy/MM/dd'/*.ndjson'\"\nfile_tag = \"raw\"\n")
    p.land("raw/2026/11/22/a.ndjson", [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    ctx = Context(usable_project(p.root))
    (draft,) = infer_feeds(ctx, "raw", ctx.window(ctx.project.courier("raw"), date="2026-11-22"))
    assert draft.feed_id == "raw" and draft.primary_key == ["id"]
    assert any('raw = [{ type = "load", file = "raw" }]' in n for n in draft.notes)


def test_other_config_problems_still_stop_infer(make_project: ProjectFactory) -> None:
    p = project_without_feed(make_project)
    p.feed("broken", '[fields]\na = "nope"\n')
    result = courier(p, "feeds", "infer", "events", "--date", "2026-11-22")
    assert result.returncode == 1 and "feeds/broken.toml" in result.stderr
    assert "order_items" not in result.stderr  # the feed about to be drafted is not a problem


@pytest.mark.parametrize("bad", ["--feed=nope"])
def test_unknown_feed_is_named(make_project: ProjectFactory, bad: str) -> None:
    p = project_without_feed(make_project)
    p.land_hour(DAY, 0, [event(1)])
    result = courier(p, "feeds", "infer", "events", "--date", "2026-11-22", bad)
    assert result.returncode == 1
    assert "courier events does not load feed 'nope' (it loads: order_items)" in result.stderr
