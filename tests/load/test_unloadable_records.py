"""Valid records DuckDB's JSON reader refuses (formats/limits.py) are quarantined with their
file, line and reason; the rest of the window loads, on every read path and format."""

from __future__ import annotations

from datetime import date
from typing import Any

import cbor2
import orjson
import pytest
import xmltodict

from tests.projects import EVENTS_COURIER, ProjectFactory, event

DAY = date(2026, 11, 22)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# (kind, the line as written, words the reason holds). Raw text: dict literals cannot hold a
# duplicate key, and orjson would drop it.
POISON = [
    ("deep", '{"event_id": "p1", "d": ' + "[" * 128 + "]" * 128 + "}", "deeper than 128"),
    ("deep-object", '{"event_id": "p2", "d": ' + '{"x": ' * 128 + "1" + "}" * 129, "deeper"),
    ("case-nested", '{"event_id": "p3", "customer": {"id": 1, "ID": 2}}', "differ only in case"),
    ("case-in-list", '{"event_id": "p4", "l": [{"id": 1, "Id": 2}]}', "differ only in case"),
    ("case-top", '{"event_id": "p5", "Event_ID": "x"}', "differ only in case"),
    ("empty-key", '{"": 1, "event_id": "p6"}', "empty key"),
    ("reserved-key", '{"event_id": "p7", "_courier_file": "x"}', "reserved"),
    ("duplicate", '{"event_id": "p8", "customer": {"id": 1, "id": 2}}', "twice"),
    ("duplicate-spaced", '{"event_id" : "p9", "event_id" : "p9"}', "twice"),
]


def window(poison: str) -> bytes:
    good = [event(1), event(2), event(3)]
    lines = [orjson.dumps(good[0]), orjson.dumps(good[1]), poison.encode(), orjson.dumps(good[2])]
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "held"])
@pytest.mark.parametrize("kind,line,reason", POISON, ids=[p[0] for p in POISON])
def test_an_unloadable_ndjson_record_is_quarantined_and_the_rest_loads(
    make_project: ProjectFactory, kind: str, line: str, reason: str, streamed: bool
) -> None:
    p = make_project.events_project()
    if not streamed:  # a full schema scan reads the tag into a table
        p.courier(
            "events",
            EVENTS_COURIER.replace(
                "max_bad_records = 10", 'max_bad_records = 10, schema_scan = "full"'
            ),
        )
    p.land_hour(DAY, 0, window(line))
    p.land_hour(DAY, 1, [event(4)])  # another file of the window, clean
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    assert result["quarantined"] == 1
    loaded = p.sql("SELECT DISTINCT event_id FROM order_items ORDER BY 1")
    assert loaded == [("e1",), ("e2",), ("e3",), ("e4",)]
    (q,) = p.sql("SELECT file, line, reason, raw FROM courier.quarantine")
    assert q[0] == "events/2026/11/22/00/part-test-000000.ndjson" and q[1] == 3
    assert reason in q[2] and "DuckDB cannot load it" in q[2], q[2]
    assert q[3] == line[:4096]
    # the next run of the window has nothing left to do: the file is loaded, not retried
    assert p.run()["status"] == "skipped"


def test_a_duplicate_key_the_scan_cannot_see_is_located_by_duckdb(
    make_project: ProjectFactory,
) -> None:
    # A spaced colon hides one key from the text's count and `\":` inside a string adds one,
    # so the line scan lets the record through; DuckDB names its line, and it is quarantined.
    p = make_project.events_project()
    sneaky = '{"event_id": "p1", "a": 1, "a" : 2, "b" : 3, "note": "x\\":"}'
    p.land_hour(DAY, 0, window(sneaky) + b"{not json}\n")
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    reasons = dict(p.sql("SELECT line, reason FROM courier.quarantine"))
    assert sorted(reasons) == [3, 5]
    assert "duplicate key" in reasons[3]


def landed_xml(body: str) -> dict[str, Any]:
    """The tree an XML stream lands (as the ingest API parses it, minus its refusals)."""
    return xmltodict.parse(body)


CBOR_POISON = [
    ("deep", {"event_id": "p1", "d": nested(130)}, "deeper"),
    ("case-nested", {"event_id": "p2", "customer": {"id": 1, "ID": 2}}, "differ only in case"),
    ("empty-key", {"": 1, "event_id": "p3"}, "empty key"),
    ("reserved-key", {"event_id": "p4", "_courier_file": "x"}, "reserved"),
    (
        "xml-deep",
        landed_xml("<e><event_id>p5</event_id>" + "<a>" * 130 + "1" + "</a>" * 130 + "</e>"),
        "deeper",
    ),
    (
        "xml-case",
        landed_xml("<e><event_id>p6</event_id><customer><id>1</id><ID>2</ID></customer></e>"),
        "differ only in case",
    ),
]


@pytest.mark.parametrize("kind,item,reason", CBOR_POISON, ids=[p[0] for p in CBOR_POISON])
def test_an_unloadable_cbor_or_xml_record_is_quarantined_and_the_rest_loads(
    make_project: ProjectFactory, kind: str, item: Any, reason: str
) -> None:
    p = make_project.events_project()
    p.courier(
        "events",
        EVENTS_COURIER.replace("*.ndjson", "*.cbor")
        .replace('format = "ndjson"', 'format = "cbor"')
        .replace("max_bad_records = 10", "max_bad_records = 10, max_depth = 1000"),
    )
    if kind.startswith("xml"):  # an XML stream's records: {root tag: tree}, flattened by SQL
        p.query(
            "order_items",
            "SELECT e.event_id, 1 AS item_idx FROM (SELECT unnest(e) FROM events) AS e",
        )
        good = [landed_xml(f"<e><event_id>e{i}</event_id></e>") for i in (1, 2, 3)]
    else:
        good = [event(1), event(2), event(3)]
    items = [good[0], good[1], item, good[2]]
    p.land("events/2026/11/22/00/part-test-000000.cbor", b"".join(cbor2.dumps(i) for i in items))
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    assert result["quarantined"] == 1
    assert p.sql("SELECT DISTINCT event_id FROM order_items ORDER BY 1") == [
        ("e1",),
        ("e2",),
        ("e3",),
    ]
    (q,) = p.sql("SELECT file, line, reason FROM courier.quarantine")
    assert q[0] == "events/2026/11/22/00/part-test-000000.cbor" and q[1] == 3
    assert reason in q[2], q[2]
