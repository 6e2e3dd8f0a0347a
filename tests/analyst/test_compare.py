"""How query tests compare expected TOML values with engine values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from courier.analyst.querytest import compare, same


def test_numbers_compare_by_value_across_types() -> None:
    assert same(12.5, Decimal("12.50"))
    assert same("12.50", Decimal("12.5"))
    assert same(3, 3.0)
    assert same(7, "7")
    assert same(0.1 + 0.2, 0.3)
    assert not same(12.5, Decimal("12.51"))
    assert not same(1, "one")
    assert not same(True, 1)


def test_timestamps_compare_as_instants() -> None:
    t = datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
    assert same("2026-11-22T09:15:00Z", t)
    assert same("2026-11-22T10:15:00+01:00", t)
    assert same("2026-11-22 09:15:00", t)  # no offset: UTC
    assert same(datetime(2026, 11, 22, 9, 15), t)
    assert not same("2026-11-22T09:15:01Z", t)
    assert same("2026-11-22", date(2026, 11, 22))


def test_nulls_structs_lists_and_json() -> None:
    assert same({"null": True}, None)
    assert not same({"null": True}, 0)
    assert not same("x", None)
    assert same({"a": 1, "b": [1, 2]}, '{"a": 1, "b": [1, 2]}', "JSON")
    assert same({"a": 1}, {"a": 1, "b": None})  # absent expected key: NULL actual
    assert not same({"a": 1}, {"a": 1, "b": 2})
    assert same([{"k": "x"}], [{"k": "x"}])
    assert not same([1, 2], [1, 2, 3])
    assert same(True, "true", "JSON") and same(False, "false")
    assert not same(True, "false", "JSON")
    assert same("abc", '"abc"', "JSON")


def test_compare_reports_row_column_expected_and_actual() -> None:
    problems = compare(
        [{"id": "a", "n": 1}, {"id": "b", "n": 2}],
        ["id", "n"],
        {"id": "VARCHAR", "n": "BIGINT"},
        [("a", 1), ("b", 3), ("c", 4)],
    )
    assert problems[0].startswith("row 2, column n: expected 2, actual 3")
    assert 'actual row 2: {id: "b", n: 3}' in problems[0]
    assert problems[1].startswith("row 3: unexpected (the query returned 3 row(s), 2 expected)")


def test_compare_names_missing_columns_and_rows() -> None:
    assert compare([{"nope": 1}], ["id"], {"id": "VARCHAR"}, [("a",)]) == [
        "column(s) nope not in the result (columns: id)"
    ]
    missing = compare([{"id": "a"}, {"id": "b"}], ["id"], {"id": "VARCHAR"}, [("a",)])
    assert missing == ['row 2: missing (the query returned 1 row(s), 2 expected): {id: "b"}']
