"""`courier query import --from spark`: translations run in DuckDB with Spark's semantics;
what cannot be translated stops the import and nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from courier.analyst.spark_import import Untranslatable, import_spark
from courier.analyst.workbench import Workbench
from courier.errors import QueryError
from courier.project import SavedQuery
from tests.analyst.helpers import courier
from tests.projects import ProjectFactory

EVENTS = [
    {
        "event_id": "e1",
        "customer": {"email": "  a@x.test "},
        "items": [{"sku": "a", "qty": "2"}, {"sku": "b", "qty": "x"}],
        "coupons": [{"code": "C1"}],
        "payload": '{"campaign": {"id": "cmp-1", "tags": ["t1"]}, "score": 0.5}',
    },
    {
        "event_id": "e2",
        "customer": {"email": ""},
        "items": [{"sku": "c", "qty": "1"}],
        "coupons": [],
        "payload": '{"score": 2}',
    },
]

LEGACY = """-- the legacy Spark ingest query
SELECT
    e.event_id,
    NULLIF(TRIM(e.customer.email), '') AS email,
    pos AS item_pos,
    item.sku,
    CAST(item.qty AS INT) AS qty,
    get_json_object(e.payload, '$.campaign.id') AS campaign_id,
    from_json(e.payload, 'campaign STRUCT<id: STRING, tags: ARRAY<STRING>>, score DOUBLE') AS p,
    c.code AS coupon
FROM web_events e
LATERAL VIEW posexplode(e.items) it AS pos, item
LATERAL VIEW OUTER explode(e.coupons) cp AS c
"""


def run(sql: str, records: list[dict[str, Any]], tag: str = "web_events") -> list[tuple]:
    with Workbench() as wb:
        wb.read_records(tag, records)
        relation = wb.run_query(SavedQuery("t", Path("t.sql"), sql), [tag])
        return wb.fetch(relation)[1]


def spark_file(tmp_path: Path, text: str, name: str = "legacy.spark.sql") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lateral_views_json_functions_and_casts_keep_spark_semantics(tmp_path: Path) -> None:
    result = import_spark(spark_file(tmp_path, LEGACY))
    assert {"LATERAL VIEW posexplode", "LATERAL VIEW OUTER explode", "from_json"} <= set(
        result.rewrites
    )
    rows = run(result.sql, EVENTS)
    assert sorted(rows, key=lambda r: (r[0], r[2])) == [
        # posexplode is 0-based; CAST is lenient in Spark ('x' -> NULL); OUTER keeps e2
        ("e1", "a@x.test", 0, "a", 2, "cmp-1", {"campaign": {"id": "cmp-1", "tags": ["t1"]}, "score": 0.5}, "C1"),
        ("e1", "a@x.test", 1, "b", None, "cmp-1", {"campaign": {"id": "cmp-1", "tags": ["t1"]}, "score": 0.5}, "C1"),
        ("e2", None, 0, "c", 1, None, {"campaign": None, "score": 2.0}, None),
    ]  # fmt: skip
    assert result.sql.startswith("-- Translated from Spark SQL (legacy.spark.sql)")
    assert result.warnings == []


def test_two_lateral_views_are_a_cross_product(tmp_path: Path) -> None:
    sql = "SELECT id, a, b FROM t LATERAL VIEW explode(xs) x AS a LATERAL VIEW explode(ys) y AS b"
    result = import_spark(spark_file(tmp_path, sql))
    rows = run(result.sql, [{"id": 1, "xs": [1, 2], "ys": ["p", "q", "r"]}], "t")
    assert len(rows) == 6 and {(a, b) for _, a, b in rows} == {
        (a, b) for a in (1, 2) for b in ("p", "q", "r")
    }


def test_zipped_generators_warn_and_arrays_zip_keeps_field_names(tmp_path: Path) -> None:
    zipped = import_spark(spark_file(tmp_path, "SELECT explode(xs) AS a, explode(ys) AS b FROM t"))
    assert len(zipped.warnings) == 1 and "zipped" in zipped.warnings[0]
    assert "-- WARNING: line 1: 2 generators (explode, explode)" in zipped.sql
    # the way to zip in Spark: explode(arrays_zip(...)); fields are named after the arrays
    sql = "SELECT z.xs AS a, z.ys AS b FROM t LATERAL VIEW explode(arrays_zip(xs, ys)) v AS z"
    result = import_spark(spark_file(tmp_path, sql, "zip.sql"))
    assert result.warnings == []
    rows = run(result.sql, [{"xs": [1, 2], "ys": ["p", "q", "r"]}], "t")
    assert rows == [(1, "p"), (2, "q"), (None, "r")]


def test_explode_outer_json_tuple_and_inline(tmp_path: Path) -> None:
    sql = """
    SELECT id, explode_outer(xs) AS x FROM t
    """
    rows = run(
        import_spark(spark_file(tmp_path, sql)).sql,
        [{"id": 1, "xs": [5]}, {"id": 2, "xs": []}],
        "t",
    )
    assert rows == [(1, 5), (2, None)]
    sql = "SELECT id, a, b FROM t LATERAL VIEW json_tuple(doc, 'a', 'b') j AS a, b"
    rows = run(
        import_spark(spark_file(tmp_path, sql, "j.sql")).sql,
        [{"id": 1, "doc": '{"a": "x", "b": 2}'}],
        "t",
    )
    assert rows == [(1, "x", "2")]  # json_tuple gives strings
    sql = "SELECT id, sku, qty FROM t LATERAL VIEW inline(items) i"
    rows = run(
        import_spark(spark_file(tmp_path, sql, "i.sql")).sql,
        [{"id": 1, "items": [{"sku": "a", "qty": 1}]}],
        "t",
    )
    assert rows == [(1, "a", 1)]


@pytest.mark.parametrize(
    ("sql", "construct", "line"),
    [
        ("SELECT id,\n  stack(2, 'a', a, 'b', b) AS (k, v)\nFROM t", "stack", 2),
        ("SELECT id\nFROM t\nLATERAL VIEW stack(2, a, b) s AS x", "LATERAL VIEW stack", 3),
        (
            "SELECT id,\n  str_to_map(s, ',', ':') AS m,\n  reflect('a', 'b') FROM t",
            "str_to_map()",
            2,
        ),
        ("SELECT from_json(p, schema_of_json('{}')) FROM t", "from_json with a computed schema", 1),
    ],
)
def test_untranslatable_constructs_stop_the_import(
    tmp_path: Path, sql: str, construct: str, line: int
) -> None:
    with pytest.raises(Untranslatable) as info:
        import_spark(spark_file(tmp_path, sql))
    message = str(info.value)
    assert f"line {line}: cannot translate {construct}" in message
    assert "Nothing was written" in message


def test_syntax_errors_name_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match=r"line 2, column \d+: Spark SQL syntax error"):
        import_spark(spark_file(tmp_path, "SELECT id,\n  FROM t WHERE\n"))


def test_cli_writes_the_saved_query_and_nothing_on_failure(make_project: ProjectFactory) -> None:
    p = make_project.events_project()
    legacy = p.write("queries/legacy.spark.sql", LEGACY)
    ok = courier(p, "query", "import", str(legacy), "--from", "spark")
    assert ok.returncode == 0, ok.stderr
    assert (p.root / "queries/legacy.sql").is_file()
    assert ok.stdout.startswith("wrote queries/legacy.sql: translated from Spark SQL")
    assert "LATERAL VIEW OUTER explode" in ok.stdout
    again = courier(p, "query", "import", str(legacy), "--from", "spark")
    assert again.returncode == 1 and "exists; pass --force" in again.stderr
    bad = p.write("queries/bad.spark.sql", "SELECT stack(2, a, b) AS (k, v) FROM t\n")
    failed = courier(p, "query", "import", str(bad), "--from", "spark")
    assert failed.returncode == 1
    assert "cannot translate stack" in failed.stderr and "Traceback" not in failed.stderr
    assert not (p.root / "queries/bad.sql").exists()
    assert not list((p.root / "queries").glob("*.tmp"))


def test_to_json_of_a_whole_row_without_null_fields(tmp_path: Path) -> None:
    """struct(e.*) is the row as a struct (sqlglot alone writes {'_0': e.*}, which DuckDB
    refuses to bind) and Spark's to_json leaves NULL fields out, as DuckDB's does not."""
    sql = """SELECT e.event_id,
        get_json_object(to_json(struct(e.*)), '$.campaign') AS campaign,
        to_json(e.customer) AS customer
    FROM web_events e"""
    result = import_spark(spark_file(tmp_path, sql))
    assert {"struct(t.*)", "to_json (without NULL fields)"} <= set(result.rewrites)
    rows = run(result.sql, [{"event_id": "e1", "campaign": "c", "customer": {"a": 1, "b": None}},
                            {"event_id": "e2", "customer": {"a": None, "b": "x"}}])  # fmt: skip
    assert sorted(rows) == [("e1", "c", '{"a":1}'), ("e2", None, '{"b":"x"}')]
    with pytest.raises(Untranslatable, match=r"struct\(\*\)"):
        import_spark(spark_file(tmp_path, "SELECT to_json(struct(*)) AS j FROM web_events"))


def test_the_shipped_spark_twin_imports_to_the_same_rows_as_its_duckdb_query() -> None:
    """The README's `courier query import queries/activity.spark.sql --from spark` gives a
    query that returns what queries/activity.sql returns on the sample payloads."""
    import orjson

    repo = Path(__file__).resolve().parents[2]
    records = [orjson.loads(line) for line in (repo / "samples/activity-events.ndjson").open()]
    imported = import_spark(repo / "queries/activity.spark.sql")
    ours = (repo / "queries/activity.sql").read_text()
    assert run(imported.sql, records, "activity_events") == run(ours, records, "activity_events")
