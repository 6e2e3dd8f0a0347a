"""Courier runs end to end on the embedded default: load operations, guarantees, bad input."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tests.projects import EVENTS_QUERY, NOW, ProjectFactory, event

DAY = date(2026, 11, 22)


def test_sql_load_flattens_and_upserts(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 0, [event(1, items=2), event(2, items=3)])
    p.land_hour(DAY, 5, [event(3, customer=9, items=1)])
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    assert result["files"] == {"found": 2, "loaded": 2, "skipped": 0}
    assert result["feeds"]["order_items"] == {"read": 6, "loaded": 6, "rejected": 0}
    rows = p.sql(
        "SELECT event_id, item_idx, customer_id, sku, qty, price FROM order_items ORDER BY 1, 2"
    )
    assert rows[0] == ("e1", 1, 1, "s0", 1, pytest.approx(1.5))
    assert [r[:2] for r in rows] == [
        ("e1", 1),
        ("e1", 2),
        ("e2", 1),
        ("e2", 2),
        ("e2", 3),
        ("e3", 1),
    ]
    types = dict(
        p.sql(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'order_items'"
        )
    )
    assert types["price"] == "DECIMAL(12,2)" and types["item_idx"] == "INTEGER"
    assert "_courier_run_id" in types and "_courier_loaded_at" in types
    run_ids = p.sql("SELECT DISTINCT _courier_run_id FROM order_items")
    assert run_ids == [(result["run_id"],)]


def test_exactly_once_per_file_and_reload(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 1, [event(1)])
    assert p.run()["status"] == "succeeded"
    again = p.run()
    assert again["status"] == "skipped"
    assert again["files"] == {"found": 1, "loaded": 0, "skipped": 1}
    # a new file in the same window: only it is loaded
    p.land_hour(DAY, 2, [event(2)])
    third = p.run()
    assert third["files"]["loaded"] == 1 and third["feeds"]["order_items"]["read"] == 2
    # --reload loads every file again; the upsert keeps the table identical
    before = p.sql("SELECT event_id, item_idx, qty FROM order_items ORDER BY 1, 2")
    forced = p.run(reload=True)
    assert forced["files"]["loaded"] == 2
    assert p.sql("SELECT event_id, item_idx, qty FROM order_items ORDER BY 1, 2") == before
    assert p.sql("SELECT count(*) FROM courier.files")[0][0] == 4


def test_two_couriers_on_the_same_files_each_load_them_once(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.feed("raw_events", '[fields]\nevent_id = "string"\n')
    text = (p.root / "config/couriers/events.toml").read_text()
    p.write(
        "config/couriers/raw.toml",
        text.split("[load_operations]")[0]
        + '[load_operations]\nraw_events = [{ type = "load", file = "events" }]\n',
    )
    p.land_hour(DAY, 1, [event(1), event(2)])
    assert p.run()["files"]["loaded"] == 1
    second = p.run("raw")  # the files are new to this courier
    assert second["status"] == "succeeded" and second["files"]["loaded"] == 1
    assert p.sql("SELECT count(*) FROM raw_events")[0][0] == 2
    assert p.run("raw")["status"] == "skipped" and p.run()["status"] == "skipped"


def test_changed_file_is_loaded_again(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    path = p.land_hour(DAY, 1, [event(1, items=1)])
    p.run()
    p.land_hour(DAY, 1, [event(1, items=1), event(7, items=1)])
    assert path.exists()
    result = p.run()
    assert result["files"]["loaded"] == 1
    assert p.sql("SELECT count(*) FROM order_items")[0][0] == 2


def test_last_record_wins_by_file_and_line_order(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    first = event(1, items=1)
    first["items"][0]["qty"] = 10
    second = event(1, items=1)
    second["items"][0]["qty"] = 20
    third = event(1, items=1)
    third["items"][0]["qty"] = 30
    p.land_hour(DAY, 3, [first, second])
    p.land_hour(DAY, 4, [third])  # later hour: a later file
    p.land_hour(DAY, 2, [event(1, items=1)])  # earlier file: loses
    result = p.run()
    assert result["feeds"]["order_items"]["loaded"] == 1
    assert p.sql("SELECT qty FROM order_items") == [(30,)]


def test_truncate_and_load_and_plain_load_without_key(make_project: ProjectFactory) -> None:
    p = make_project
    p.feed("log", '[fields]\nevent_id = "string"\nkind = "string"\n')
    p.feed("latest", 'primary_key = ["event_id"]\n[fields]\nevent_id = "string"\nkind = "string"\n')
    p.courier(
        "events",
        """
        storage = "landing"
        file_pattern = "'events/'yyyy/MM/dd/HH'/*.ndjson'"
        prefix = "00"
        file_tag = "events"
        [load_operations]
        log = [{ type = "load", file = "events" }]
        latest = [{ type = "load", file = "events" }, { type = "truncateAndLoad", file = "events" }]
        """,
    )
    p.land_hour(DAY, 0, [{"event_id": "a", "kind": "x"}, {"event_id": "b", "kind": "y"}])
    assert p.run()["status"] == "succeeded"
    p.land_hour(DAY, 1, [{"event_id": "c", "kind": "z"}])
    result = p.run()
    assert result["status"] == "succeeded"
    # append without primary key: every record of every run
    assert p.sql("SELECT count(*) FROM log")[0][0] == 3
    # the truncate ran first even though listed second; the two loads upsert the new file
    assert p.sql("SELECT event_id FROM latest ORDER BY 1") == [("c",)]


def test_fetch_only_courier_records_files(make_project: ProjectFactory) -> None:
    p = make_project
    p.courier(
        "raw",
        """
        file_pattern = "'events/'yyyy/MM/dd/HH'/*.ndjson'"
        prefix = "00"
        file_tag = "raw"
        load_operations = {}
        """,
    )
    p.land_hour(DAY, 0, [{"a": 1}])
    result = p.run("raw")
    assert result["status"] == "succeeded" and result["feeds"] == {}
    assert p.sql("SELECT courier, key FROM courier.files") == [
        ("raw", "events/2026/11/22/00/part-test-000000.ndjson")
    ]


def test_dry_run_changes_nothing(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 0, [event(1)])
    result = p.run(dry_run=True)
    assert result["status"] == "dry_run"
    assert [f["key"] for f in result["files"]["list"]] == [
        "events/2026/11/22/00/part-test-000000.ndjson"
    ]
    assert p.sql("SELECT count(*) FROM courier.runs")[0][0] == 0
    assert (
        p.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'order_items'")[0][
            0
        ]
        == 0
    )


def test_window_only_lists_its_partitions(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 23, [event(1)])
    p.land_hour(date(2026, 11, 23), 0, [event(2)])  # next day's partition
    p.land_hour(date(2026, 11, 21), 23, [event(3)])
    result = p.run()
    assert result["files"]["found"] == 1
    assert p.sql("SELECT DISTINCT event_id FROM order_items") == [("e1",)]


def test_malformed_lines_are_quarantined_and_good_lines_load(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    good = b'{"event_id": "e1", "customer": {"id": 1}, "items": [{"sku": "a", "qty": 1, "price": 1}]}\n'
    body = (
        good
        + b"{not json}\n"
        + b'{"event_id": "e2", "customer": {"id": 2}, "items": [{"sku": "\xff\xfe", "qty": 1}]}\n'
        + b"[1, 2, 3]\n"
        + good.replace(b"e1", b"e3")
        + b'{"event_id": "e4", "items": ['  # truncated last line, no newline
    )
    p.land_hour(DAY, 0, body)
    p.land_hour(DAY, 1, b"")  # an empty file loads nothing and is not an error
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    assert result["feeds"]["order_items"]["loaded"] == 2
    quarantined = p.sql("SELECT file, line, reason, raw FROM courier.quarantine ORDER BY line")
    assert [q[1] for q in quarantined] == [2, 3, 4, 6]
    assert quarantined[0][0] == "events/2026/11/22/00/part-test-000000.ndjson"
    assert "malformed JSON" in quarantined[0][2] and quarantined[0][3] == "{not json}"
    assert "not UTF-8" in quarantined[1][2]
    assert "expected a JSON object" in quarantined[2][2]
    assert "truncated last line" in quarantined[3][2]
    assert result["quarantined"] == 4
    exported = Path(result["quarantine_file"]).read_text().splitlines()
    assert [json.loads(line)["line"] for line in exported] == [2, 3, 4, 6]
    landed = sorted(p.landing.rglob("*"))  # the good lines were copied elsewhere, not here
    assert [f.name for f in landed if f.is_file()] == ["part-test-000000.ndjson"] * 2


def test_valid_json_lines_that_are_not_objects_are_quarantined(
    make_project: ProjectFactory,
) -> None:
    # Every line parses, so only the object check keeps these from the streamed read.
    p = make_project.events_project()
    good = b'{"event_id": "e1", "customer": {"id": 1}, "items": [{"sku": "a", "qty": 1, "price": 2}]}\n'
    p.land_hour(DAY, 0, good + b"[1, 2, 3]\n" + b'"just text"\n' + good.replace(b"e1", b"e2"))
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    assert result["feeds"]["order_items"]["loaded"] == 2
    reasons = p.sql("SELECT line, reason FROM courier.quarantine ORDER BY line")
    assert [r[0] for r in reasons] == [2, 3]
    assert all("expected a JSON object" in r[1] for r in reasons)


def test_not_json_at_all_over_the_limit_fails_and_changes_nothing(
    make_project: ProjectFactory,
) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 0, [event(1)])
    assert p.run()["status"] == "succeeded"
    before = p.sql("SELECT * FROM order_items ORDER BY 1, 2")
    p.land_hour(DAY, 1, [event(1, items=5)])
    p.land_hour(DAY, 2, b"".join(b"this is, not JSON at all %d\n" % i for i in range(20)))
    result = p.run()
    assert result["status"] == "failed"
    assert "exceed max_bad_records" in result["error"]
    assert "part-test-000000.ndjson line 1" in result["error"]
    assert p.sql("SELECT * FROM order_items ORDER BY 1, 2") == before
    # the failed run loaded no file: both are still to load
    assert p.sql("SELECT count(*) FROM courier.files")[0][0] == 1
    assert p.sql("SELECT status FROM courier.runs ORDER BY started_at DESC, status LIMIT 1") in (
        [("failed",)],
        [("succeeded",)],
    )
    statuses = sorted(s for (s,) in p.sql("SELECT status FROM courier.runs"))
    assert statuses == ["failed", "succeeded"]
    # the bad lines are kept for diagnosis
    assert (
        p.sql(
            "SELECT count(*) FROM courier.quarantine WHERE run_id = ?".replace(
                "?", f"'{result['run_id']}'"
            )
        )[0][0]
        == 20
    )


def test_fractional_max_bad_records(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.write(
        "config/couriers/events.toml",
        (p.root / "config/couriers/events.toml")
        .read_text()
        .replace("max_bad_records = 10", "max_bad_records = 0.5"),
    )
    p.land_hour(DAY, 0, [event(i) for i in range(10)])
    p.land_hour(DAY, 1, b"bad\n" * 4)
    assert p.run()["status"] == "succeeded"  # 4 of 14 < 50%


def test_cast_failures_and_null_keys_are_quarantined_by_column(
    make_project: ProjectFactory,
) -> None:
    p = make_project
    p.feed(
        "people",
        """
        primary_key = ["id"]
        required = ["name"]
        [fields]
        id = "bigint"
        name = "string"
        born = "date"
        """,
    )
    p.courier(
        "people",
        """
        file_pattern = "'people/'yyyy/MM/dd'/*.ndjson'"
        file_tag = "people"
        [load_operations]
        people = [{ type = "load", file = "people" }]
        """,
    )
    p.land(
        "people/2026/11/22/a.ndjson",
        [
            {"id": 1, "name": "ada", "born": "1815-12-10"},
            {"id": 2, "name": "bob", "born": "not a date"},
            {"id": None, "name": "nokey", "born": "1900-01-01"},
            {"id": 4, "born": "1900-01-01"},
            {"id": 5, "name": "eve", "born": "2000-02-29", "extra": "ignored"},
        ],
    )
    result = p.run("people")
    assert result["status"] == "succeeded", result["error"]
    assert result["feeds"]["people"] == {"read": 5, "loaded": 2, "rejected": 3}
    assert p.sql("SELECT id FROM people ORDER BY id") == [(1,), (5,)]
    rejects = p.sql("SELECT feed, file, line, reason FROM courier.quarantine ORDER BY line")
    assert rejects[0][:3] == ("people", "people/2026/11/22/a.ndjson", 2)
    assert "born: cannot cast" in rejects[0][3] and "not a date" in rejects[0][3]
    assert "id: required field is null" in rejects[1][3]
    assert "name: required field is null" in rejects[2][3]
    assert any("extra" in w for w in result["warnings"])


def test_missing_files_fail_naming_the_pattern_unless_skip_missing(
    make_project: ProjectFactory,
) -> None:
    p = make_project.events_project()
    result = p.run()
    assert result["status"] == "failed"
    assert "'events/'yyyy/MM/dd/HH'/*.ndjson'" in result["error"]
    assert "2026-11-22T00:00:00Z" in result["error"]
    text = (p.root / "config/couriers/events.toml").read_text()
    p.write("config/couriers/events.toml", "skip_missing = true\n" + text)
    ok = p.run()
    assert ok["status"] == "skipped" and ok["warnings"]


def test_query_errors_name_the_query_and_columns(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.query("order_items", "SELECT e.no_such_field FROM events e")
    p.land_hour(DAY, 0, [event(1)])
    result = p.run()
    assert result["status"] == "failed"
    assert "query 'order_items'" in result["error"]
    assert "queries/order_items.sql" in result["error"]
    assert "no_such_field" in result["error"]
    assert "events: event_id, customer, items" in result["error"]
    assert (
        p.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'order_items'")[0][
            0
        ]
        == 0
    )


def wide_project(p: ProjectFactory, query: str | None = None, **fields: str) -> ProjectFactory:
    """A feed `wide` of these fields from daily files wide/yyyy/MM/dd, loaded as they are or,
    given `query`, through that saved query (which then streams the tag from the files)."""
    p.feed("wide", "[fields]\n" + "".join(f'{k} = "{v}"\n' for k, v in fields.items()))
    operation = '{ type = "load", file = "wide" }'
    if query is not None:
        p.query("wide", query)
        operation = '{ type = "sql", sql-query = "wide", sql-files = [{ file = "wide" }] }'
    p.courier(
        "wide",
        f"""
        file_pattern = "'wide/'yyyy/MM/dd'/*.ndjson'"
        file_tag = "wide"
        [load_operations]
        wide = [{operation}]
        """,
    )
    return p


def test_field_changing_type_is_reported_and_cast_by_value(make_project: ProjectFactory) -> None:
    p = wide_project(make_project, id="bigint", v="string", n="int")
    p.land("wide/2026/11/22/a.ndjson", [{"id": 1, "v": 5, "n": 1}])
    assert p.run("wide")["status"] == "succeeded"
    p.land(
        "wide/2026/11/23/a.ndjson",
        [
            {"id": 2, "v": "text", "n": "7"},
            {"id": 3, "v": {"a": 1}, "n": None},
            {"id": 4, "v": None, "n": "seven"},
        ],
    )
    changed = p.run("wide", day="2026-11-23")
    assert changed["status"] == "succeeded", changed["error"]
    assert "field v changed type BIGINT -> JSON" in changed["schema_changes"]
    assert changed["feeds"]["wide"] == {"read": 3, "loaded": 2, "rejected": 1}
    rows = p.sql("SELECT id, v, n FROM wide ORDER BY id")
    assert rows == [(1, "5", 1), (2, "text", 7), (3, '{"a":1}', None)]
    (reason,) = p.sql("SELECT reason FROM courier.quarantine")[0]
    assert reason == "n: cannot cast seven to int"


@pytest.mark.parametrize(
    "operation",
    [
        '{ type = "sql", sql-query = "measures", sql-files = [{ file = "raw" }] }',
        '{ type = "load", file = "raw" }',
    ],
    ids=["streamed-by-one-query", "held-in-a-table"],
)
def test_value_past_the_sample_of_another_type_widens_the_schema(
    make_project: ProjectFactory, operation: str
) -> None:
    # A string where 30,000 records had numbers: DuckDB's sampled schema cannot hold it. A
    # tag held in a table is read again with a schema over every record; a tag streamed into
    # its one query is then held in a table too, and the query runs again.
    p = make_project
    p.feed("measures", '[fields]\nid = "bigint"\nn = "string"\n')
    p.query("measures", "SELECT m.id, m.n FROM raw m")
    p.courier(
        "raw",
        f"""
        file_pattern = "'raw/'yyyy/MM/dd'/*.ndjson'"
        file_tag = "raw"
        [load_operations]
        measures = [{operation}]
        """,
    )
    lines = b"".join(b'{"id": %d, "n": %d}\n' % (i, i) for i in range(30_000))
    p.land("raw/2026/11/22/a.ndjson", lines + b'{"id": 30000, "n": "thirty thousand"}\n')
    result = p.run("raw")
    assert result["status"] == "succeeded", result["error"]
    assert result["records"] == 30_001
    assert result["feeds"]["measures"] == {"read": 30_001, "loaded": 30_001, "rejected": 0}
    assert p.sql("SELECT n FROM measures WHERE id IN (7, 30000) ORDER BY id") == [
        ("7",),
        ("thirty thousand",),
    ]
    (pinned,) = p.sql("SELECT columns FROM courier.schemas")[0]
    assert json.loads(pinned)["n"] == "JSON"  # widened over every record, and pinned


def test_query_syntax_error_fails_the_run_naming_the_query(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.query("order_items", "SELECT e.event_id,\n  FROM events e WHERE")
    p.land_hour(DAY, 0, [event(1)])
    result = p.run()
    assert result["status"] == "failed"
    assert "query 'order_items'" in result["error"]
    assert "queries/order_items.sql" in result["error"]
    assert "syntax error" in result["error"].lower()
    assert p.sql("SELECT count(*) FROM courier.files")[0][0] == 0  # nothing counted as loaded
    assert p.sql("SELECT status FROM courier.runs") == [("failed",)]


def test_query_column_not_in_feed_warns_or_rejects(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.query(
        "order_items",
        EVENTS_QUERY.replace("AS price", "AS price, 'x' AS \"coupon'; DROP TABLE t; --\""),
    )
    p.land_hour(DAY, 0, [event(1)])
    ignored = p.run()
    assert ignored["status"] == "succeeded", ignored["error"]
    (warning,) = [w for w in ignored["warnings"] if "coupon" in w]
    assert "feed order_items" in warning and "query 'order_items'" in warning
    assert "ignored" in warning
    assert p.sql("SELECT count(*) FROM order_items")[0][0] == 2
    feed = (p.root / "feeds/order_items.toml").read_text()
    p.write("feeds/order_items.toml", 'unknown_columns = "reject"\n' + feed)
    rejected = p.run(reload=True)
    assert rejected["status"] == "succeeded", rejected["error"]
    assert rejected["feeds"]["order_items"]["rejected"] == 2
    reasons = p.sql("SELECT DISTINCT reason FROM courier.quarantine")
    assert reasons == [("coupon'; DROP TABLE t; --: column is not in feed order_items",)]
    assert any("rejected" in w and "coupon" in w for w in rejected["warnings"])


@pytest.mark.parametrize("query", [None, "SELECT * FROM wide"], ids=["held", "streamed"])
def test_field_first_seen_after_100k_records_still_loads(
    make_project: ProjectFactory, query: str | None
) -> None:
    p = wide_project(make_project, query, id="bigint", late="string")
    lines = b"".join(b'{"id": %d}\n' % i for i in range(100_500))
    lines += b'{"id": 100500, "late": "finally"}\n'
    p.land("wide/2026/11/22/a.ndjson", lines)
    result = p.run("wide")
    assert result["status"] == "succeeded", result["error"]
    assert p.sql("SELECT id, late FROM wide WHERE late IS NOT NULL") == [(100500, "finally")]
    # the schema is pinned; a field new in a later run is reported
    p.land("wide/2026/11/23/a.ndjson", [{"id": 1, "later": True}])
    nxt = p.run("wide", day="2026-11-23")
    assert nxt["schema_changes"] == ["new field later (BOOLEAN)"]


def test_adding_a_nullable_field_migrates_in_place(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 0, [event(1, items=1)])
    p.run()
    p.feed("order_items", (p.root / "feeds/order_items.toml").read_text() + 'email = "string"\n')
    p.query(
        "order_items",
        (p.root / "queries/order_items.sql")
        .read_text()
        .replace("AS customer_id,", "AS customer_id, e.customer.email AS email,"),
    )
    p.land_hour(DAY, 1, [event(2, customer=3, items=1)])
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    assert any("added column order_items.email" in w for w in result["warnings"])
    assert p.sql("SELECT event_id, email FROM order_items ORDER BY 1") == [
        ("e1", None),
        ("e2", "c3@x.test"),
    ]


def test_run_history_records_counts(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    p.land_hour(DAY, 0, [event(1, items=3)])
    result = p.run()
    runs = p.context().runs("events")
    assert len(runs) == 1
    rec = runs[0]
    assert rec["run_id"] == result["run_id"] and rec["status"] == "succeeded"
    assert rec["feeds"] == {"order_items": {"read": 3, "loaded": 3, "rejected": 0}}
    assert rec["window"] == {"start": "2026-11-22T00:00:00Z", "end": "2026-11-23T00:00:00Z"}
    assert rec["files"]["loaded"] == 1 and rec["bytes"] > 0 and rec["duration_s"] is not None
    assert NOW.isoformat()[:10] in rec["started_at"]


def test_lookback_loads_late_files_once(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    text = (p.root / "config/couriers/events.toml").read_text()
    p.write("config/couriers/events.toml", 'lookback = "2d"\n' + text)
    p.land_hour(DAY, 0, [event(1)])
    assert p.run()["files"]["loaded"] == 1
    p.land_hour(DAY, 5, [event(2)])  # lands late, after its day was loaded
    p.land_hour(date(2026, 11, 23), 1, [event(3)])
    nxt = p.run(day="2026-11-23")
    assert nxt["files"]["loaded"] == 2
    assert p.sql("SELECT DISTINCT event_id FROM order_items ORDER BY 1") == [
        ("e1",),
        ("e2",),
        ("e3",),
    ]
    assert p.run(day="2026-11-23")["status"] == "skipped"
