"""Rows a saved query produced keep the place of the input record they came from (issue 16
item 2, issue 18 item 4): a rejected row names the landed file and line, and the last record
per feed key wins by that place, whatever order the query's output has."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pytest

from courier.engines.record_order import carry_record_order
from courier.engines.remembered_order import remembered_record_order
from tests.newcomer.helpers import courier
from tests.projects import ProjectFactory, event

DAY = date(2026, 11, 22)
HOUR5 = "events/2026/11/22/05/part-test-000000.ndjson"
HOUR7 = "events/2026/11/22/07/part-test-000000.ndjson"


def lines(*records: object) -> bytes:
    return b"".join(
        (r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records
    )


def test_cast_rejects_of_a_query_name_the_input_file_and_line(
    make_project: ProjectFactory,
) -> None:
    p = make_project.events_project()
    bad_qty = event(3)
    bad_qty["items"][1]["qty"] = "lots"  # one item of the record cannot be cast to int
    p.land_hour(DAY, 5, lines(event(1), event(2), bad_qty, event(4)))
    no_id = event(6)
    del no_id["event_id"]  # a required key missing: both of its items are rejected
    p.land_hour(DAY, 7, lines(event(5), no_id))

    ran = courier(p, "run", "events", "--date", "2026-11-22", "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["feeds"]["order_items"] == {"read": 12, "loaded": 9, "rejected": 3}

    listed = courier(p, "quarantine", "--run", result["run_id"], "--json")
    assert listed.returncode == 0, listed.stderr
    rows = sorted(json.loads(listed.stdout), key=lambda r: (r["file"], r["line"], r["reason"]))
    assert [(r["file"], r["line"]) for r in rows] == [(HOUR5, 3), (HOUR7, 2), (HOUR7, 2)]
    assert "qty: cannot cast lots to int" in rows[0]["reason"]
    assert json.loads(rows[0]["raw"])["event_id"] == "e3"
    assert all("event_id: required field is null" in r["reason"] for r in rows[1:])
    assert p.sql("SELECT file, line FROM courier.quarantine ORDER BY ALL") == [
        (HOUR5, 3), (HOUR7, 2), (HOUR7, 2),
    ]  # fmt: skip


def test_lines_are_those_of_the_landed_file_when_malformed_lines_come_first(
    make_project: ProjectFactory,
) -> None:
    p = make_project.events_project()
    bad_qty = event(3)
    bad_qty["items"][0]["qty"] = "lots"
    # line 2 is malformed: the file is read through a clean copy without it
    p.land_hour(DAY, 5, lines(event(1), b'{"event_id": "broken', event(2), bad_qty))
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    got = p.sql("SELECT file, line, reason FROM courier.quarantine ORDER BY line")
    assert [(f, n) for f, n, _ in got] == [(HOUR5, 2), (HOUR5, 4)]
    assert "qty: cannot cast" in got[1][2]


def test_the_same_lines_on_a_second_read_of_the_tag(make_project: ProjectFactory) -> None:
    """A value the sampled schema cannot read makes the streamed tag read again into a table:
    its rows keep their lines there too."""
    p = make_project.events_project()
    p.land_hour(DAY, 5, lines(*[event(i) for i in range(1, 3000)]))
    odd = event(9000)
    odd["customer"] = {"id": "not-a-number", "email": "x"}  # past the sample: BIGINT fails
    p.land_hour(DAY, 7, lines(event(8999), odd))
    result = p.run()
    assert result["status"] == "succeeded", result["error"]
    got = p.sql("SELECT file, line, reason FROM courier.quarantine")
    assert {(f, n) for f, n, _ in got} == {(HOUR7, 2)}
    assert all("customer_id: cannot cast" in r for _, _, r in got)


KV_FEED = """
primary_key = ["k"]
required = ["v"]

[fields]
k = "string"
v = "int"
"""

KV_COURIER = """
storage = "landing"
file_pattern = "'kv/'yyyy/MM/dd/HH'/*.ndjson'"
prefix = "00"
file_tag = "kv"
options = { max_bad_records = 1000 }

[load_operations]
kv = [{ type = "sql", sql-query = "kv", sql-files = [{ file = "kv" }] }]
"""


def test_last_record_wins_by_input_place_not_by_the_query_output_order(
    make_project: ProjectFactory,
) -> None:
    p = make_project.feed("kv", KV_FEED).courier("kv", KV_COURIER)
    # the query's output is in value order: the last record per key is not the last row
    p.query("kv", "SELECT k, v FROM kv ORDER BY v")
    rng = random.Random(5)
    last: dict[str, int] = {}
    for hour in range(4):
        rows = [{"k": rng.choice("abcdefgh"), "v": rng.randrange(10_000)} for _ in range(300)]
        p.land(f"kv/{DAY:%Y/%m/%d}/{hour:02d}/part-0.ndjson", rows)
        last.update({r["k"]: r["v"] for r in rows})
    result = p.run("kv")
    assert result["status"] == "succeeded", result["error"]
    assert dict(p.sql("SELECT k, v FROM kv")) == last


def test_a_query_that_aggregates_keeps_output_positions(make_project: ProjectFactory) -> None:
    """The fallback: rows of a GROUP BY come from many records, so they name no file; line
    is the row's position in the query's output, as before."""
    p = make_project.feed("kv", KV_FEED).courier("kv", KV_COURIER)
    p.query("kv", "SELECT k, max(v) AS v FROM kv GROUP BY k ORDER BY k")
    p.land(f"kv/{DAY:%Y/%m/%d}/00/part-0.ndjson", [{"k": "a", "v": 1}, {"k": "b", "v": "x"}])
    result = p.run("kv")
    assert result["status"] == "succeeded", result["error"]
    assert p.sql("SELECT file, line FROM courier.quarantine") == [(None, 2)]


ORDERED = {"events": "events_ordered"}


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM events", 'SELECT * FROM "events_ordered" AS "events"'),
        ("SELECT e.* FROM events e", 'SELECT e.* FROM "events_ordered" e'),
        (
            "SELECT e.a -- note\nFROM events AS e, LATERAL (SELECT unnest(e.l) AS x) AS i",
            'SELECT e.a -- note\n, "e"."_courier_rank", "e"."_courier_line" '
            'FROM "events_ordered" AS e, LATERAL (SELECT unnest(e.l) AS x) AS i',
        ),
        (
            "WITH w AS (SELECT * FROM events UNION ALL BY NAME SELECT 1 AS z WHERE false) "
            "SELECT w.a FROM w",
            'WITH w AS (SELECT * FROM "events_ordered" AS "events" UNION ALL BY NAME '
            'SELECT 1 AS z WHERE false) SELECT w.a , "w"."_courier_rank", "w"."_courier_line" '
            "FROM w",
        ),
        ("SELECT count(*) FROM events", None),
        ("SELECT a FROM events GROUP BY a", None),
        ("SELECT DISTINCT a FROM events", None),
        ("SELECT a FROM events UNION SELECT a FROM events", None),
        ("SELECT a FROM other_table", None),
        ("SELECT 1", None),
    ],
)
def test_which_query_shapes_carry_the_place(sql: str, expected: str | None) -> None:
    assert carry_record_order(sql, ORDERED) == expected


def test_the_edit_is_remembered_by_query_text_across_relation_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A courier's query is edited once: later runs (other relation names) read the edit back
    without parsing; another query text, or a cache that cannot be written, edits afresh."""
    from courier.engines import record_order

    sql = "SELECT e.event_id, e.n FROM events e WHERE e.n > 1"
    first = remembered_record_order(sql, {"events": "_courier_in_events_1_ordered"}, tmp_path)
    assert first == carry_record_order(sql, {"events": "_courier_in_events_1_ordered"})
    assert first is not None and len(list(tmp_path.iterdir())) == 1

    def no_parse(*_: object, **__: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(record_order, "carry_record_order", no_parse)
    again = remembered_record_order(sql, {"events": "_courier_in_events_7_ordered"}, tmp_path)
    assert again == first.replace("_courier_in_events_1_ordered", "_courier_in_events_7_ordered")
    with pytest.raises(AssertionError, match="parsed again"):
        remembered_record_order(sql + " AND e.n < 9", {"events": "x"}, tmp_path)
    monkeypatch.undo()
    # a query the edit cannot follow is remembered as such
    grouped = "SELECT e.n, count(*) AS c FROM events e GROUP BY e.n"
    assert remembered_record_order(grouped, {"events": "v"}, tmp_path) is None
    assert remembered_record_order(grouped, {"events": "w"}, tmp_path) is None
    blocked = tmp_path / "a-file"  # a cache folder that cannot be made (even by root)
    blocked.write_text("")
    assert remembered_record_order(sql, {"events": "v"}, blocked / "cache") is not None
